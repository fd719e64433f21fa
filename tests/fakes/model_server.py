"""A scripted model server on loopback: the real agent CLIs talk to it instead of a provider.

    with ModelServer() as server:                     # http://127.0.0.1:PORT
        server.script = SCRIPTS["write_file"]         # or "script:write_file" anywhere in the prompt
        env["ANTHROPIC_BASE_URL"] = server.url        # claude
        env["OPENAI_BASE_URL"] = server.url + "/v1"   # codex

It speaks the Anthropic Messages API (`POST /v1/messages`, streaming SSE or not, text and `tool_use`
blocks; `POST /v1/messages/count_tokens`; `HEAD /` and `GET /` probes) and the OpenAI Responses API
codex uses (`POST /v1/responses`, streaming, `function_call` items; `GET /v1/models`). Standard library
only. Every request is recorded (`server.requests`; of the credential only its last 4 characters).

**Scripts are stateless**: the step played is the number of assistant turns since the conversation's last
prompt from a person (a user message that is not only tool results), so a resumed session or a second
worker sees the same script from the right step, and a CLI's retries replay the same step. A request
without tools (a CLI's side calls: titles, summaries, topic checks) gets a short text answer and does not
advance anything.

A step is a list of blocks: `text(...)`, `tool(name, **input)`; or `HANG` (the stream starts and never
ends: timeouts) or `SPEND` (a tool call on every turn, forever: budgets). After the last step the script
answers its `final` text.
"""

from __future__ import annotations

import contextlib
import json
import re
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

Block = dict[str, Any]
HANG = "hang"
SPEND = "spend"
SCRIPT_MARK = re.compile(r"script:([a-z_]+)")
SIDE_ANSWER = "ok"


def text(value: str) -> Block:
    return {"type": "text", "text": value}


def tool(name: str, **tool_input: Any) -> Block:
    """A tool call. For codex, `name` is the function it exposes (`shell`, `exec_command`...) and the
    input its arguments; for claude, one of its tools (Bash, Write, Edit...)."""
    return {"type": "tool_use", "name": name, "input": tool_input}


@dataclass
class Script:
    name: str
    steps: list[Any] = field(default_factory=list)
    final: str = "Done."

    def step(self, index: int) -> Any:
        if self.steps and self.steps[-1] == SPEND and index >= len(self.steps) - 1:
            return [tool("Bash", command="echo still working", description="keep going")]
        if index < len(self.steps):
            return self.steps[index]
        return [text(self.final)]


SCRIPTS: dict[str, Script] = {
    script.name: script
    for script in (
        Script("answer", [], final="Nothing to change: the answer is 42."),
        Script(
            "write_file",
            [
                [
                    text("I'll write the file."),
                    tool("Write", file_path="{cwd}/hello.txt", content="hello from the agent\n"),
                ]
            ],
            final="Wrote hello.txt.",
        ),
        Script(
            "bash_write",
            [
                [
                    text("Running a command."),
                    tool(
                        "Bash",
                        command="echo from-bash > bash.txt && cat bash.txt",
                        description="write bash.txt",
                    ),
                ]
            ],
            final="Created bash.txt.",
        ),
        Script(
            "make_test",
            [
                [tool("Bash", command="make test", description="run the tests")],
                [tool("Write", file_path="{cwd}/fixed.txt", content="fixed\n")],
                [tool("Bash", command="make test", description="run the tests again")],
            ],
            final="The tests pass now.",
        ),
        Script(
            "forbidden",
            [[tool("Bash", command="touch forbidden.txt", description="a command the agent may not run")]],
            final="I could not run that command.",
        ),
        Script("remember", [], final="I will remember: the code word is PELICAN."),
        Script(
            "blocked",  # like the fake CLIs' blocked mode: some work first, then the question for a person
            [
                [
                    text("Starting."),
                    tool("Bash", command="echo from-bash > bash.txt", description="start the work"),
                ]
            ],
            final="BLOCKED: need the API token",
        ),
        Script(  # a Product Owner's answer from the orchestrator CLI: what it printed, relayed
            "po_orchestrator",
            [[tool("Bash", command="orchestrator project list --json", description="list the projects")]],
            final="Your projects, as the orchestrator CLI lists them: {tool_result}",
        ),
        Script("hang", [HANG]),
        Script("spend", [SPEND]),
    )
}


def _user_prompts(messages: list[Any]) -> list[str]:
    """The texts of the user messages that are prompts (not only tool results)."""
    prompts = []
    for message in messages:
        if not isinstance(message, dict) or message.get("role") != "user":
            continue
        content = message.get("content")
        if isinstance(content, str):
            prompts.append(content)
            continue
        texts = [b.get("text", "") for b in content or [] if isinstance(b, dict) and b.get("type") == "text"]
        if any(isinstance(b, dict) and b.get("type") == "tool_result" for b in content or []) and not any(
            t.strip() and not t.startswith("<system-reminder>") for t in texts
        ):
            continue
        prompts.append("\n".join(texts))
    return prompts


def _turns_since_prompt(messages: list[Any], is_prompt: Any) -> int:
    count = 0
    for message in messages:
        if is_prompt(message):
            count = 0
        elif isinstance(message, dict) and message.get("role") == "assistant":
            count += 1
    return count


def _anthropic_is_prompt(message: Any) -> bool:
    return isinstance(message, dict) and message.get("role") == "user" and bool(_user_prompts([message]))


class ModelServer:
    """The server; a context manager that runs it in a thread."""

    def __init__(self, script: Script | str = "answer", model: str = "claude-sonnet-4-5-20250929") -> None:
        self.script = SCRIPTS[script] if isinstance(script, str) else script
        self.model = model
        self.requests: list[dict[str, Any]] = []
        self.hang_s = 3600.0
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), _handler(self))
        self._httpd.daemon_threads = True
        self._thread = threading.Thread(target=self._httpd.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        port = self._httpd.server_address[1]
        return f"http://127.0.0.1:{port}"

    def __enter__(self) -> ModelServer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._httpd.shutdown()
        self._httpd.server_close()

    def record(self, entry: dict[str, Any]) -> None:
        with self._lock:
            self.requests.append(entry)

    def agent_requests(self, path: str = "/v1/messages") -> list[dict[str, Any]]:
        """The recorded requests to `path` that carried tools (the agent's own turns)."""
        return [r for r in self.requests if r["path"] == path and (r.get("body") or {}).get("tools")]

    def script_for(self, prompts: list[str]) -> Script:
        for prompt in reversed(prompts):
            if match := SCRIPT_MARK.search(prompt):
                return SCRIPTS.get(match.group(1), self.script)
        return self.script

    def wait_hang(self) -> None:
        self._stop.wait(self.hang_s)


def _usage(body: Any) -> dict[str, int]:
    return {"input_tokens": max(1, len(json.dumps(body)) // 40), "output_tokens": 25}


def _fill(value: Any, cwd: str) -> Any:
    if isinstance(value, str):
        return value.replace("{cwd}", cwd)
    if isinstance(value, dict):
        return {k: _fill(v, cwd) for k, v in value.items()}
    return value


def _with_tool_result(block: Block, messages: list[Any]) -> Block:
    """A text block's `{tool_result}`: the output of the agent's last tool call (from the latest tool_result
    it sent back), so a script's answer can relay what a command printed."""
    if block.get("type") != "text" or "{tool_result}" not in block["text"]:
        return block
    output = ""
    for message in messages:
        for item in message.get("content") if isinstance(message.get("content"), list) else []:
            if isinstance(item, dict) and item.get("type") == "tool_result":
                content = item.get("content")
                if isinstance(content, list):
                    content = "".join(c.get("text", "") for c in content if isinstance(c, dict))
                output = str(content or "")
    return {**block, "text": block["text"].replace("{tool_result}", output.strip())}


def _cwd(system: Any) -> str:
    """The agent's working directory, as its system prompt states it (claude: "Working directory: ...")."""
    flat = json.dumps(system) if not isinstance(system, str) else system
    match = re.search(r"[Ww]orking directory: (/[^\s\"\\]+)", flat) or re.search(r"<cwd>(/[^<]+)</cwd>", flat)
    return match.group(1) if match else "."


class _ModelHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    model_server: ModelServer
    """The server this handler plays for; `_handler` binds it in a subclass (`self.server` is the HTTP server)."""

    def log_message(self, *args: Any) -> None:
        """Quiet: tests read the recorded requests, not stderr."""

    def _json(self, status: int, payload: Any) -> None:
        data = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _record(self, body: Any) -> None:
        headers = {
            k.lower(): v for k, v in self.headers.items() if k.lower() not in ("authorization", "x-api-key")
        }
        key = self.headers.get("x-api-key") or self.headers.get("authorization") or ""
        self.model_server.record(
            {
                "method": self.command,
                "path": self.path.split("?")[0],
                "headers": headers,
                "key_end": key[-4:],
                "body": body,
                "at": time.time(),
            }
        )

    def do_HEAD(self) -> None:
        self._record(None)
        self.send_response(200)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def do_GET(self) -> None:
        self._record(None)
        path = self.path.split("?")[0]
        if path.endswith("/responses"):  # codex tries a WebSocket first: none here, use HTTPS at once
            self._json(404, {"error": {"message": "no WebSocket transport", "type": "not_found"}})
        elif path.endswith("/models"):
            self._json(
                200,
                {
                    "object": "list",
                    "data": [{"id": self.model_server.model, "object": "model"}],
                    "models": [],
                },
            )
        else:
            self._json(200, {"ok": True})

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        try:
            body = json.loads(raw or b"{}")
        except ValueError:
            body = {"_raw": raw.decode("utf-8", "replace")}
        self._record(body)
        path = self.path.split("?")[0]
        if path.endswith("/messages/count_tokens"):
            self._json(200, {"input_tokens": _usage(body)["input_tokens"]})
        elif path.endswith("/messages"):
            self._anthropic(body)
        elif path.endswith("/responses"):
            self._openai_responses(body)
        else:
            self._json(404, {"type": "error", "error": {"type": "not_found_error", "message": path}})

    def _sse_start(self) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.send_header("Cache-Control", "no-cache")
        self.send_header("Connection", "close")
        self.end_headers()
        self.close_connection = True

    def _event(self, name: str | None, payload: Any) -> None:
        head = f"event: {name}\n" if name else ""
        with contextlib.suppress(OSError):  # the CLI hung up mid-stream (a timeout kill): nothing to tell it
            self.wfile.write(f"{head}data: {json.dumps(payload)}\n\n".encode())
            self.wfile.flush()

    # -- Anthropic Messages ----------------------------------------------------------

    def _anthropic_step(self, body: dict[str, Any]) -> Any:
        """The script step this request plays: a short side answer for a request without tools."""
        if not body.get("tools"):
            return [text(SIDE_ANSWER)]
        messages = body.get("messages") or []
        script = self.model_server.script_for(_user_prompts(messages))
        return script.step(_turns_since_prompt(messages, _anthropic_is_prompt))

    def _anthropic(self, body: dict[str, Any]) -> None:
        messages = body.get("messages") or []
        step = self._anthropic_step(body)
        cwd = _cwd(body.get("system"))
        names = {t.get("name") for t in body.get("tools") or [] if isinstance(t, dict)}
        blocks = [] if step == HANG else [_droid_call(_fill(b, cwd), names) for b in step]
        blocks = [_with_tool_result(b, messages) for b in blocks]
        for block in blocks:
            if block["type"] == "tool_use":
                block.setdefault("id", f"toolu_{uuid.uuid4().hex[:20]}")
        stop_reason = "tool_use" if any(b["type"] == "tool_use" for b in blocks) else "end_turn"
        usage = _usage(body)
        message: dict[str, Any] = {
            "id": f"msg_{uuid.uuid4().hex[:20]}",
            "type": "message",
            "role": "assistant",
            "model": body.get("model") or self.model_server.model,
            "content": [],
            "stop_reason": None,
            "stop_sequence": None,
            "usage": {**usage, "output_tokens": 1},
        }
        if not body.get("stream"):
            message.update(content=blocks, stop_reason=stop_reason, usage=usage)
            self._json(200, message)
            return
        self._sse_start()
        self._event("message_start", {"type": "message_start", "message": message})
        if step == HANG:
            self._event("ping", {"type": "ping"})
            self.model_server.wait_hang()
            return
        for index, block in enumerate(blocks):
            self._anthropic_block(index, block)
        self._event(
            "message_delta",
            {
                "type": "message_delta",
                "delta": {"stop_reason": stop_reason, "stop_sequence": None},
                "usage": {"output_tokens": usage["output_tokens"]},
            },
        )
        self._event("message_stop", {"type": "message_stop"})
        self.close_connection = True

    def _anthropic_block(self, index: int, block: Block) -> None:
        """One content block streamed: its start, its deltas in chunks, its stop."""
        if block["type"] == "text":
            start: Block = {"type": "text", "text": ""}
            deltas = [{"type": "text_delta", "text": chunk} for chunk in _chunks(block["text"])]
        else:
            start = {"type": "tool_use", "id": block["id"], "name": block["name"], "input": {}}
            deltas = [
                {"type": "input_json_delta", "partial_json": chunk}
                for chunk in _chunks(json.dumps(block["input"]))
            ]
        self._event(
            "content_block_start", {"type": "content_block_start", "index": index, "content_block": start}
        )
        for delta in deltas:
            self._event(
                "content_block_delta", {"type": "content_block_delta", "index": index, "delta": delta}
            )
        self._event("content_block_stop", {"type": "content_block_stop", "index": index})

    # -- OpenAI Responses (codex) ----------------------------------------------------

    def _openai_step(self, body: dict[str, Any], items: list[dict[str, Any]]) -> Any:
        """The script step this request plays: a short side answer for a request without tools."""
        prompts = [_openai_text(i) for i in items if i.get("role") == "user"]
        turns = 0
        for item in items:
            if item.get("role") == "user" and not _openai_text(item).startswith("<"):
                turns = 0
            elif item.get("type") == "function_call" or (
                item.get("role") == "assistant" and item.get("type", "message") == "message"
            ):
                turns += 1 if item.get("type") == "function_call" else 0
        if not body.get("tools"):
            return [text(SIDE_ANSWER)]
        return self.model_server.script_for(prompts).step(turns)

    def _openai_responses(self, body: dict[str, Any]) -> None:
        items = [i for i in body.get("input") or [] if isinstance(i, dict)]
        step = self._openai_step(body, items)
        response_id = f"resp_{uuid.uuid4().hex[:20]}"
        usage = _usage(body)
        base: dict[str, Any] = {
            "id": response_id,
            "object": "response",
            "created_at": int(time.time()),
            "model": body.get("model") or self.model_server.model,
            "status": "in_progress",
            "output": [],
        }
        self._sse_start()
        self._event(None, {"type": "response.created", "response": base})
        if step == HANG:
            self.model_server.wait_hang()
            return
        output = []
        for index, block in enumerate(step):
            if block["type"] == "text":
                item = self._openai_message(index, block)
            else:
                item = _openai_function_call(block, _cwd(items))
            self._event(None, {"type": "response.output_item.done", "output_index": index, "item": item})
            output.append(item)
        done = {
            **base,
            "status": "completed",
            "output": output,
            "usage": {
                "input_tokens": usage["input_tokens"],
                "output_tokens": usage["output_tokens"],
                "total_tokens": usage["input_tokens"] + usage["output_tokens"],
                "input_tokens_details": {"cached_tokens": 0},
                "output_tokens_details": {"reasoning_tokens": 0},
            },
        }
        self._event(None, {"type": "response.completed", "response": done})

    def _openai_message(self, index: int, block: Block) -> dict[str, Any]:
        """A text block as an assistant message item: announced, its text as one delta; the item returned."""
        item = {
            "type": "message",
            "id": f"msg_{uuid.uuid4().hex[:16]}",
            "role": "assistant",
            "status": "completed",
            "content": [{"type": "output_text", "text": block["text"], "annotations": []}],
        }
        self._event(
            None,
            {
                "type": "response.output_item.added",
                "output_index": index,
                "item": {**item, "content": [], "status": "in_progress"},
            },
        )
        self._event(
            None,
            {
                "type": "response.output_text.delta",
                "output_index": index,
                "content_index": 0,
                "item_id": item["id"],
                "delta": block["text"],
            },
        )
        return item


def _handler(server: ModelServer) -> type[BaseHTTPRequestHandler]:
    return type("Handler", (_ModelHandler,), {"model_server": server})


def _openai_function_call(block: Block, cwd: str) -> dict[str, Any]:
    """A tool block as a codex `function_call` item."""
    name, arguments = _codex_call(block, cwd)
    return {
        "type": "function_call",
        "id": f"fc_{uuid.uuid4().hex[:16]}",
        "call_id": f"call_{uuid.uuid4().hex[:16]}",
        "name": name,
        "arguments": json.dumps(arguments),
        "status": "completed",
    }


def _droid_call(block: Block, names: set[Any]) -> Block:
    """A script's tool call in Factory Droid's vocabulary when the request offers droid's tools (Execute,
    Create) instead of Claude Code's (Bash, Write)."""
    if block["type"] != "tool_use" or block["name"] in names:
        return block
    tool_input = block["input"]
    if block["name"] == "Bash" and "Execute" in names:
        return {
            **block,
            "name": "Execute",
            "input": {
                "command": tool_input["command"],
                "riskLevel": "low",
                "summary": "Run the scripted command now",
                "riskLevelReason": "It only touches the workspace.",
            },
        }
    if block["name"] == "Write" and "Create" in names:
        return {**block, "name": "Create"}
    return block


def _codex_call(block: Block, cwd: str) -> tuple[str, dict[str, Any]]:
    """A script's tool call in codex's vocabulary: its shell tool, `exec_command` (the tools of a model
    codex has no metadata for; its own models get a JavaScript `exec` tool instead)."""
    tool_input = _fill(block["input"], cwd)
    if block["name"] == "Bash":
        return "exec_command", {"cmd": tool_input["command"]}
    if block["name"] == "Write":
        content = tool_input["content"].replace("'", "'\\''")
        return "exec_command", {"cmd": f"printf '%s' '{content}' > {tool_input['file_path']}"}
    return block["name"], tool_input


def _openai_text(item: dict[str, Any]) -> str:
    content = item.get("content")
    if isinstance(content, str):
        return content
    return "\n".join(str(p.get("text", "")) for p in content or [] if isinstance(p, dict))


def _chunks(value: str, size: int = 40) -> Iterator[str]:
    for start in range(0, max(len(value), 1), size):
        yield value[start : start + size]


if __name__ == "__main__":  # a manual run: python tests/fakes/model_server.py [script]
    import sys

    with ModelServer(sys.argv[1] if len(sys.argv) > 1 else "write_file") as running:
        print(running.url, flush=True)
        with contextlib.suppress(KeyboardInterrupt):  # Ctrl-C ends a manual run
            while True:
                time.sleep(3600)
