#!/usr/bin/env bash
# Renders docker/nginx.conf, the nginx template of compose.yaml, with the given addresses:
#
#   scripts/nginx-conf.sh LISTEN NODE_1 NODE_2 > chat.conf
#   scripts/nginx-conf.sh 127.0.0.1:8080 127.0.0.1:4004 127.0.0.1:4005
#
# The result belongs inside nginx's `http` block. The nginx image renders the same template
# from compose.yaml's environment; the tests render it with this script, so both run the same
# configuration. Fails if the template names a placeholder this script does not fill.
set -euo pipefail
cd "$(dirname "$0")/.."

if [[ $# -ne 3 ]]; then
  echo "usage: $0 LISTEN NODE_1 NODE_2" >&2
  exit 2
fi
template=docker/nginx.conf
rendered=$(sed -e "s|\${NGINX_LISTEN}|$1|g" -e "s|\${CHAT_NODE_1}|$2|g" -e "s|\${CHAT_NODE_2}|$3|g" "$template")
if left=$(grep -o '\${[A-Za-z_][A-Za-z0-9_]*}' <<<"$rendered"); then
  echo "$0: $template has placeholders this script does not fill: $(sort -u <<<"$left" | tr '\n' ' ')" >&2
  exit 1
fi
printf '%s\n' "$rendered"
