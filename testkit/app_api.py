"""The app's API as the page calls it: the /analyze inputs in the page's order, and a browser
tab's way of sending one event (``QueueClient``)."""

from __future__ import annotations

import json


def analyze_args(
    video, question="Which way does the shape move?", options="left\nright", reference="A", **kw
):
    """The /analyze inputs in the page's order: clip, question, options, reference, prompt kind,
    then the settings (keywords override them)."""
    settings = {
        "max_new_tokens": 48,
        "do_sample": False,
        "temperature": 1.0,
        "top_p": 0.9,
        "seed": 0,
        "top_t": 2,
        "perturbations": ["noise", "mute"],
        "attention": True,
        "compare_base": False,
    }
    unknown = set(kw) - set(settings)
    if unknown:
        raise TypeError(f"analyze_args: no /analyze setting named {sorted(unknown)}")
    settings.update(kw)
    return (video, question, options, reference, "reasoning", *settings.values())


class QueueClient:
    """One browser tab's way of sending an event: POST ``queue/join``, then read the session's
    server-sent events until the event completes (what the page's JavaScript does). Lighter
    than gradio_client, which opens a new connection and stream for every call and adds
    70-150 ms of its own on this machine."""

    def __init__(self, url: str) -> None:
        import uuid

        import httpx

        self.http = httpx.Client(base_url=url.rstrip("/") + "/gradio_api/", timeout=120)
        config = httpx.get(url.rstrip("/") + "/config", timeout=30).json()
        self.fn_index = {d["api_name"]: d["id"] for d in config["dependencies"] if d.get("api_name")}
        self.session = uuid.uuid4().hex

    def call(self, api_name: str, data: list):
        joined = self.http.post(
            "queue/join",
            json={
                "data": data,
                "fn_index": self.fn_index[api_name],
                "session_hash": self.session,
                "event_data": None,
                "trigger_id": None,
            },
        )
        joined.raise_for_status()
        event_id = joined.json()["event_id"]
        with self.http.stream(
            "GET", "queue/data", params={"session_hash": self.session}, timeout=None
        ) as stream:
            for line in stream.iter_lines():
                if not line.startswith("data:"):
                    continue
                message = json.loads(line[5:])
                if message.get("event_id") == event_id and message["msg"] == "process_completed":
                    if not message.get("success", True):
                        raise RuntimeError(f"{api_name} failed: {message.get('output')}")
                    return message["output"]["data"]
        raise RuntimeError(f"{api_name}: the stream ended before the event completed")

    def close(self) -> None:
        self.http.close()
