"""A second client stack against the chat service: python-socketio's client.

Run by test/python-client.test.js. Two python clients (one over websocket, one over HTTP
long-polling) join a conversation, exchange a message, typing and a thread switch with each
other, check a refused payload and a refused handshake, and trade one message with the node
test's own socket.io-client. The websocket client then goes away, misses messages from node
and python, and catches up by joining again with the last message it has. Prints one JSON
object per line on stdout:
    {"step": "sent", "messageId": ...}        after the python message went out
    {"step": "away", "lastMessageId": ...}    the websocket client is gone: send it messages
    {"step": "done", ...}                     the observations, at the end
Exits non-zero with a message on stderr when anything does not happen in time.
"""

import argparse
import json
import queue
import sys

import socketio

TIMEOUT_S = 10


def emit_line(obj):
    print(json.dumps(obj), flush=True)


def fail(message):
    print(f"python client flow failed: {message}", file=sys.stderr, flush=True)
    sys.exit(1)


class Recorder:
    """Queues every event a client receives so the flow can wait for them in order."""

    def __init__(self, client):
        self.events = queue.Queue()
        self.kept = []
        client.on("*", self._record)

    def _record(self, event, *args):
        self.events.put((event, args[0] if args else None))

    def wait_for(self, event, where=lambda data: True):
        for i, (name, data) in enumerate(self.kept):
            if name == event and where(data):
                del self.kept[i]
                return data
        while True:
            try:
                name, data = self.events.get(timeout=TIMEOUT_S)
            except queue.Empty:
                fail(f"no {event!r} within {TIMEOUT_S}s; kept {[n for n, _ in self.kept]}")
            if name == event and where(data):
                return data
            self.kept.append((name, data))


def connect(url, token, transports):
    client = socketio.Client(reconnection=False)
    recorder = Recorder(client)
    client.connect(url, auth={"token": token}, transports=transports, wait_timeout=TIMEOUT_S)
    return client, recorder


def check(condition, message):
    if not condition:
        fail(message)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--url", required=True)
    parser.add_argument("--token-a", required=True)
    parser.add_argument("--token-b", required=True)
    parser.add_argument("--conversation", required=True)
    args = parser.parse_args()
    conv = args.conversation

    a, rec_a = connect(args.url, args.token_a, ["websocket"])
    b, rec_b = connect(args.url, args.token_b, ["polling"])
    check(a.transport() == "websocket", f"client a transport {a.transport()}")
    check(b.transport() == "polling", f"client b transport {b.transport()}")

    ack = a.call("conversation:join", conv, timeout=TIMEOUT_S)
    check(ack.get("ok") is True, f"join a: {ack}")
    joined = rec_a.wait_for("conversation:joined")
    check(joined["id"] == conv, f"conversation:joined {joined}")
    ack = b.call("conversation:join", {"conversationId": conv}, timeout=TIMEOUT_S)
    check(ack.get("ok") is True, f"join b: {ack}")
    seen_join = rec_a.wait_for("user:joined")

    # A message from the websocket client, received by the polling one under both names.
    ack = a.call("message:send", {"conversationId": conv, "content": "hello from python", "tempId": "py-1"}, timeout=TIMEOUT_S)
    check(ack.get("ok") is True, f"send: {ack}")
    message = ack["message"]
    check(message["id"] == message["_id"], f"ids differ: {message}")
    emit_line({"step": "sent", "messageId": message["id"]})
    new = rec_b.wait_for("message:new", lambda d: d["message"]["id"] == message["id"])
    legacy = rec_b.wait_for("message", lambda d: d["id"] == message["id"])
    check(new["conversationId"] == conv and legacy["content"] == "hello from python", "message payloads")

    # Typing from the polling client reaches the websocket one only.
    b.emit("typing", {"conversationId": conv, "isTyping": True})
    typing = rec_a.wait_for("user:typing")
    check(typing == {"conversationId": conv, "userId": typing["userId"], "isTyping": True}, f"typing {typing}")

    # Threads over the python stack.
    created = a.call("thread:create", {"conversationId": conv, "title": "From python"}, timeout=TIMEOUT_S)
    check(created.get("ok") is True, f"thread:create {created}")
    thread_id = created["thread"]["id"]
    rec_b.wait_for("thread:created", lambda d: d["thread"]["id"] == thread_id)
    b.emit("thread:switch", {"conversationId": conv, "threadId": thread_id})
    switched = rec_b.wait_for("thread:switched")
    check(switched == {"conversationId": conv, "threadId": thread_id}, f"thread:switched {switched}")

    # The node test's client answers the python message; the python clients receive it.
    reply = rec_a.wait_for("message:new", lambda d: d["message"]["content"] == "hello from node")
    rec_b.wait_for("message:new", lambda d: d["message"]["content"] == "hello from node")

    # A refused payload answers this client only, which stays connected and can still send.
    b.emit("message:send", {"conversationId": conv, "content": "", "tempId": "py-bad"})
    error = rec_b.wait_for("error")
    message_error = rec_b.wait_for("message:error")
    check(error.get("message") == "Invalid message data", f"error {error}")
    check(message_error == {"messageId": "py-bad", "error": "Invalid message data"}, f"message:error {message_error}")
    ack = b.call("message:send", {"conversationId": conv, "content": "still connected"}, timeout=TIMEOUT_S)
    check(ack.get("ok") is True and b.connected, f"send after refusal: {ack}")

    # Catching up without connection state recovery (python-socketio has none): the websocket
    # client goes away, messages from node and python are sent meanwhile, and it comes back
    # asking for what came after the last message it has.
    last_seen = rec_a.wait_for("message:new", lambda d: d["message"]["id"] == ack["message"]["id"])["message"]["id"]
    a.disconnect()
    emit_line({"step": "away", "lastMessageId": last_seen})
    from_node = [
        rec_b.wait_for("message:new", lambda d, i=i: d["message"]["content"] == f"missed from node {i}")["message"]
        for i in (1, 2, 3)
    ]
    from_python = []
    for i in (1, 2):
        sent = b.call("message:send", {"conversationId": conv, "content": f"missed from python {i}"}, timeout=TIMEOUT_S)
        check(sent.get("ok") is True, f"send while a is away: {sent}")
        from_python.append(sent["message"])
    expected = [m["id"] for m in from_node + from_python]
    a, rec_a = connect(args.url, args.token_a, ["websocket"])
    back = a.call("conversation:join", {"conversationId": conv, "lastMessageId": last_seen}, timeout=TIMEOUT_S)
    check(back.get("ok") is True, f"join with lastMessageId: {back}")
    rec_a.wait_for("conversation:joined", lambda d: d["id"] == conv)
    missed = back.get("missed") or []
    check([m["id"] for m in missed] == expected, f"missed {[m.get('content') for m in missed]}, expected {expected}")
    check(back.get("hasMore") is False, f"hasMore {back.get('hasMore')}")
    # Once: a live message comes after them, and none of them arrives a second time.
    after = b.call("message:send", {"conversationId": conv, "content": "after catching up"}, timeout=TIMEOUT_S)
    rec_a.wait_for("message:new", lambda d: d["message"]["id"] == after["message"]["id"])
    twice = [d["message"]["id"] for n, d in rec_a.kept if n in ("message", "message:new") and (d.get("message") or d)["id"] in expected]
    check(not twice, f"missed messages also arrived as events: {twice}")

    # A refused handshake surfaces as connect_error with the contract's message.
    refused = socketio.Client(reconnection=False)
    reasons = []
    refused.on("connect_error", lambda data=None: reasons.append(data))
    try:
        refused.connect(args.url, auth={"token": "not-a-token"}, transports=["websocket"], wait_timeout=TIMEOUT_S)
        fail("a bad token was accepted")
    except socketio.exceptions.ConnectionError:
        pass

    b.call("conversation:leave", conv, timeout=TIMEOUT_S)
    left = rec_a.wait_for("user:left")

    a.disconnect()
    b.disconnect()
    emit_line(
        {
            "step": "done",
            "joined": joined,
            "userJoined": seen_join,
            "message": message,
            "typing": typing,
            "reply": reply["message"],
            "refusal": reasons[0] if reasons else None,
            "userLeft": left,
            "catchUp": {"missed": missed, "hasMore": back.get("hasMore")},
        }
    )


if __name__ == "__main__":
    main()
