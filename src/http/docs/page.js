"use strict";
// Renders the OpenAPI document at ./openapi.json. Everything taken from the document is
// inserted as text (escaped), never as markup.
(function () {
  const root = document.getElementById("doc");
  const METHODS = ["get", "post", "put", "patch", "delete"];
  // Names of the document's schemas: a code span naming one links to it.
  let schemaNames = new Set();

  function el(tag, attrs, ...children) {
    const node = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) node.setAttribute(k, v);
    for (const c of children.flat(Infinity)) {
      if (c == null || c === false) continue;
      node.append(c instanceof Node ? c : String(c));
    }
    return node;
  }

  // Inline Markdown: `code`, **bold**, [text](#anchor or http(s) link).
  function inline(text) {
    const out = [];
    const re = /`([^`]+)`|\*\*([^*]+)\*\*|\[([^\]]+)\]\(([^)\s]+)\)/g;
    let last = 0, m;
    while ((m = re.exec(text))) {
      if (m.index > last) out.push(text.slice(last, m.index));
      if (m[1] !== undefined) out.push(schemaNames.has(m[1]) ? schemaLink(m[1], el("code", null, m[1])) : el("code", null, m[1]));
      else if (m[2] !== undefined) out.push(el("strong", null, inline(m[2])));
      else if (/^(#|https?:\/\/)/.test(m[4])) out.push(el("a", { href: m[4] }, m[3]));
      else out.push(m[3]);
      last = re.lastIndex;
    }
    if (last < text.length) out.push(text.slice(last));
    return out;
  }

  // Block Markdown: headings, paragraphs, bullet lists, tables, fenced code.
  function markdown(text) {
    const lines = (text || "").split("\n");
    const out = [];
    const cells = (line) => line.trim().replace(/^\||\|$/g, "").split("|").map((c) => c.trim());
    for (let i = 0; i < lines.length; ) {
      const line = lines[i];
      if (!line.trim()) { i++; continue; }
      let m;
      if ((m = /^(#{1,4})\s+(.*)$/.exec(line))) {
        out.push(el("h" + Math.min(m[1].length + 2, 6), null, inline(m[2])));
        i++;
      } else if (line.startsWith("```")) {
        const code = [];
        for (i++; i < lines.length && !lines[i].startsWith("```"); i++) code.push(lines[i]);
        i++;
        out.push(el("pre", null, el("code", null, code.join("\n"))));
      } else if (line.trim().startsWith("|")) {
        const rows = [];
        for (; i < lines.length && lines[i].trim().startsWith("|"); i++) rows.push(lines[i]);
        const body = rows.slice(1).filter((r) => !/^\s*\|[\s|:-]+\|\s*$/.test(r));
        out.push(el("table", null,
          el("thead", null, el("tr", null, cells(rows[0]).map((c) => el("th", null, inline(c))))),
          el("tbody", null, body.map((r) => el("tr", null, cells(r).map((c) => el("td", null, inline(c))))))));
      } else if (/^\s*[-*]\s+/.test(line)) {
        const items = [];
        for (; i < lines.length && /^\s*[-*]\s+/.test(lines[i]); i++) {
          let item = lines[i].replace(/^\s*[-*]\s+/, "");
          for (; i + 1 < lines.length && /^\s{2,}\S/.test(lines[i + 1]); i++) item += " " + lines[i + 1].trim();
          items.push(el("li", null, inline(item)));
        }
        out.push(el("ul", null, items));
      } else {
        const para = [];
        for (; i < lines.length && lines[i].trim() && !/^(#|```|\s*\||\s*[-*]\s)/.test(lines[i]); i++) para.push(lines[i].trim());
        out.push(el("p", null, inline(para.join(" "))));
      }
    }
    return out;
  }

  const refName = (ref) => ref.split("/").pop();
  const schemaLink = (name, label) => el("a", { href: "#schema-" + name }, label || name);

  // A one-line description of a schema's type, with links to named schemas.
  function typeOf(s) {
    if (!s) return ["any"];
    if (s.$ref) return [schemaLink(refName(s.$ref))];
    const alts = s.oneOf || s.anyOf;
    if (alts) return alts.flatMap((a, i) => (i ? [" | ", ...typeOf(a)] : typeOf(a)));
    if (s.allOf) return s.allOf.flatMap((a, i) => (i ? [" & ", ...typeOf(a)] : typeOf(a)));
    if (s.enum) return [s.enum.map((v) => JSON.stringify(v)).join(" | ")];
    const types = Array.isArray(s.type) ? s.type : s.type ? [s.type] : [];
    if (!types.length) return [s.properties ? "object" : "any"];
    return types.flatMap((t, i) => {
      let part;
      if (t === "array") part = ["array of ", ...typeOf(s.items)];
      else if (t === "object" && s.additionalProperties && !s.properties) part = ["object of ", ...typeOf(s.additionalProperties)];
      else part = [t + (s.format ? " (" + s.format + ")" : "")];
      return i ? [" | ", ...part] : part;
    });
  }

  // A schema: its type, description and, for objects, each property.
  function schemaView(s) {
    if (!s) return null;
    const required = new Set(s.required || []);
    const props = Object.entries(s.properties || {});
    return el("div", { class: "schema" },
      s.description ? el("div", { class: "muted" }, inline(s.description)) : null,
      props.length
        ? props.map(([name, p]) => el("div", { class: "prop" },
            el("code", null, name), " ", el("span", { class: "type" }, typeOf(p)),
            required.has(name) ? el("span", { class: "req" }, " required") : null,
            p.description ? [" — ", inline(p.description)] : null,
            !p.$ref && p.properties ? schemaView(p) : null))
        : el("div", { class: "type" }, typeOf(s)),
      s.additionalProperties && props.length ? el("div", { class: "muted" }, "Other keys allowed.") : null);
  }

  function jsonContent(content) {
    const media = content && (content["application/json"] || Object.values(content)[0]);
    return media && media.schema;
  }

  function operationView(path, method, op) {
    const params = op.parameters || [];
    const security = (op.security || []).flatMap((r) => Object.keys(r));
    return el("details", { class: "op", id: op.operationId || "" },
      el("summary", null, el("span", { class: "method " + method }, method), el("span", { class: "path" }, path),
        el("span", { class: "muted" }, op.summary || "")),
      el("div", { class: "body" },
        markdown(op.description),
        security.length ? el("p", null, "Authorization: ", security.map((s, i) => [i ? ", " : "", el("a", { href: "#security-" + s }, s)])) : null,
        params.length ? [el("h4", null, "Parameters"), el("table", null,
          el("thead", null, el("tr", null, ["name", "in", "type", "description"].map((h) => el("th", null, h)))),
          el("tbody", null, params.map((p) => el("tr", null,
            el("td", null, el("code", null, p.name), p.required ? el("span", { class: "req" }, " required") : null),
            el("td", null, p.in), el("td", { class: "type" }, typeOf(p.schema)), el("td", null, inline(p.description || ""))))))] : null,
        op.requestBody ? [el("h4", null, "Request body"), schemaView(jsonContent(op.requestBody.content))] : null,
        el("h4", null, "Responses"),
        Object.entries(op.responses || {}).map(([status, r]) => el("div", null,
          el("span", { class: "status" }, status), " ", inline(r.description || ""),
          schemaView(jsonContent(r.content))))));
  }

  function render(doc) {
    const info = doc.info || {};
    const byTag = new Map((doc.tags || []).map((t) => [t.name, { tag: t, ops: [] }]));
    for (const [path, item] of Object.entries(doc.paths || {})) {
      for (const method of METHODS) {
        const op = item[method];
        if (!op) continue;
        const tag = (op.tags && op.tags[0]) || "other";
        if (!byTag.has(tag)) byTag.set(tag, { tag: { name: tag }, ops: [] });
        byTag.get(tag).ops.push(operationView(path, method, op));
      }
    }
    const components = doc.components || {};
    schemaNames = new Set(Object.keys(components.schemas || {}));
    root.replaceChildren(el("div", null,
      el("h1", null, info.title || "API"),
      el("p", { class: "muted" }, "Version ", info.version || "?", " · OpenAPI ", doc.openapi, " · ", el("a", { href: "openapi.json" }, "openapi.json")),
      markdown(info.description),
      el("h2", null, "Routes"),
      [...byTag.values()].filter((g) => g.ops.length).map((g) => [
        el("h3", null, g.tag.name), g.tag.description ? el("p", { class: "muted" }, inline(g.tag.description)) : null, g.ops]),
      el("h2", null, "Security schemes"),
      Object.entries(components.securitySchemes || {}).map(([name, s]) => el("p", { id: "security-" + name },
        el("code", null, name), " — ", s.type, s.scheme ? " " + s.scheme : "", s.bearerFormat ? " (" + s.bearerFormat + ")" : "",
        s.description ? [": ", inline(s.description)] : null)),
      el("h2", null, "Schemas"),
      Object.entries(components.schemas || {}).map(([name, s]) => [el("h3", { id: "schema-" + name }, name), schemaView(s)])));
  }

  fetch("openapi.json", { headers: { accept: "application/json" } })
    .then((r) => (r.ok ? r.json() : Promise.reject(new Error("HTTP " + r.status))))
    .then(render)
    .then(() => {
      // The target of a link into the page exists only now.
      const target = location.hash && document.getElementById(decodeURIComponent(location.hash.slice(1)));
      if (target) {
        if (target.tagName === "DETAILS") target.open = true;
        target.scrollIntoView();
      }
    })
    .catch((e) => root.replaceChildren(el("p", null, "Could not load openapi.json: " + e.message)));
})();
