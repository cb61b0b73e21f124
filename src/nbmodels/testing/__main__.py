"""``python -m nbmodels.testing``: serve the Hub emulator on 127.0.0.1 until interrupted.

Prints ``HF_ENDPOINT=...`` (and the tokens of the gated/private repos) on the first lines, so a
script or ``make demo`` can point huggingface_hub and nbmodels at it. Stops on Ctrl-C or SIGTERM.
"""

from __future__ import annotations

import argparse
import signal
import sys
import threading
from collections.abc import Sequence
from types import FrameType

from ._demo import demo_repos, standard_repos
from ._emulator import HubEmulator
from ._service import service_repos


def main(argv: Sequence[str] | None = None) -> int:
    """Run the emulator in the foreground; return the exit status."""
    parser = argparse.ArgumentParser(
        prog="python -m nbmodels.testing",
        description="Serve a local Hugging Face Hub emulator on 127.0.0.1 until interrupted.",
    )
    parser.add_argument("--port", type=int, default=0, help="Hub port (default: any free port)")
    parser.add_argument("--cdn-port", type=int, default=0, help="CDN port (default: any)")
    parser.add_argument("--demo", action="store_true", help="add the demo models (~400 MB)")
    parser.add_argument("--scale", type=float, default=1.0, help="size factor for --demo")
    parser.add_argument("--no-standard", action="store_true", help="skip the small test repos")
    parser.add_argument(
        "--service",
        action="store_true",
        help="add the repos and files the HTTP service's examples name (docs/api.md)",
    )
    parser.add_argument("--throttle", type=int, default=None, help="CDN bytes/s per connection")
    args = parser.parse_args(argv)

    hub = HubEmulator(hub_port=args.port, cdn_port=args.cdn_port)
    lines = []
    if not args.no_standard:
        ids = standard_repos(hub)
        lines.append(f"# standard repos; token for gated/private: {ids.token}")
    if args.demo:
        demo = demo_repos(hub, scale=args.scale)
        lines.append(f"# demo repos: {demo.gguf} {demo.safetensors} {demo.gated}")
        lines.append(f"# demo token: {demo.token}")
    hub.throttle = args.throttle
    stop = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    with hub:
        if args.service:  # its files are served by URL: the emulator must be listening
            service = service_repos(hub)
            lines.append(
                f"# service examples' repos: {service.lmstudio} {' '.join(service.versioned)}"
            )
            lines += [f"# {external} -> {url}" for external, url in service.urls.items()]
        print(f"HF_ENDPOINT={hub.endpoint}")
        print(f"# CDN: {hub.cdn_url}")
        print("\n".join(lines), flush=True)
        try:
            while not stop.wait(0.5):
                pass
        except KeyboardInterrupt:
            pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
