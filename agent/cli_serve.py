"""``eid-agent serve`` (the resident agent) and ``eid-agent demo`` (agent + virtual card +
reference portal), wired from the pieces: PC/SC backend, operations core, WebSocket server,
interaction provider and, when there is a display, the tray.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import errno
import logging
import os
import signal
import subprocess
import sys
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

from agent import __version__
from agent.interaction import UserInteraction

logger = logging.getLogger(__name__)

INTERACTIONS = ("auto", "dialogs", "console", "scripted", "none")


def has_display() -> bool:
    if sys.platform in ("win32", "darwin"):
        return True
    return bool(os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY"))


def make_interaction(kind: str, script: Path | None = None, log_dir: Path | None = None) -> UserInteraction:
    """The provider for ``--interaction``; ``auto``: dialogs, else console, else none."""
    if kind == "scripted":
        from agent.interaction_scripted import ScriptedInteraction

        if script is None:
            raise SystemExit("--interaction scripted needs --script FILE")
        return ScriptedInteraction(script)
    if kind == "none":
        from tray.headless import NoUserInterface

        return NoUserInterface()
    if kind == "console":
        if sys.stdin is None or not sys.stdin.isatty():
            raise SystemExit("--interaction console needs a terminal")
        from agent.interaction_console import ConsoleInteraction

        return ConsoleInteraction()
    dialog_log = log_dir / "dialogs.log" if log_dir else None
    if kind == "dialogs":
        if not has_display():
            raise SystemExit("--interaction dialogs needs a display")
        from tray.interaction import DialogInteraction

        return DialogInteraction(stderr_path=dialog_log)
    from tray.headless import choose_interaction

    return choose_interaction(dialog_log=dialog_log)


def build_config(args: argparse.Namespace) -> Any:
    from agent.core.config import AgentConfig
    from agent.policy import load_policy

    policy = load_policy()
    if args.allow_origin:
        # A developer's or demo's own pre-approval; machine policy still applies on top.
        policy = dataclasses.replace(
            policy, allowed_origins=tuple(policy.allowed_origins) + tuple(args.allow_origin)
        )
    port = policy.port or args.port
    config = AgentConfig(port=port, policy=policy, log_level=args.log_level)
    if args.config_dir:
        config = dataclasses.replace(config, config_dir=Path(args.config_dir))
    return config


def _log_to_file(config: Any) -> None:
    try:
        config.log_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        logger.warning("no log folder %s: %s", config.log_dir, exc)
        return
    handler = logging.FileHandler(config.log_dir / "eid-agent.log", encoding="utf-8")
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    logging.getLogger().addHandler(handler)


async def run_agent(
    config: Any,
    interaction: UserInteraction,
    *,
    ready: Callable[[Any, Any], None] | None = None,
    stop: asyncio.Event | None = None,
    wss: WssOptions | None = None,
) -> None:
    """Serve until ``stop`` is set (or the task is cancelled); ``wss://`` beside ``ws://``."""
    from agent.core.service import AgentService
    from agent.pcsc import PcscBackend
    from agent.ws import serve

    backend = PcscBackend()
    service = AgentService(backend, interaction, config=config)
    stop = stop or asyncio.Event()
    await service.start()
    try:
        async with serve(service, port=config.port) as server, _wss(
            service, config, server.port, wss
        ):
            print(
                f"eid-agent {__version__} listening on ws://127.0.0.1:{server.port}",
                flush=True,
            )
            if ready is not None:
                ready(service, server)
            waits = [asyncio.ensure_future(stop.wait()), asyncio.ensure_future(service.wait_shutdown())]
            try:
                await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
            finally:
                for waiter in waits:
                    waiter.cancel()
    finally:
        await service.stop()


@dataclasses.dataclass(frozen=True)
class WssOptions:
    """The ``wss://`` listener: on the port after the ws port (24848 by default).

    ``trust``: ``auto`` adds a newly made CA to this user's browser trust stores (and swaps
    it on renewal); ``none`` leaves the stores alone (``eid-agent install-certificate``).
    """

    enabled: bool = True
    port: int | None = None
    trust: str = "auto"


@contextlib.asynccontextmanager
async def _wss(service: Any, config: Any, ws_port: int, options: WssOptions | None) -> Any:
    """The TLS listener, or nothing (disabled, or its port taken: ws:// still serves)."""
    options = options or WssOptions()
    if not options.enabled:
        yield None
        return
    from agent import localca
    from agent.ws import serve

    try:
        tls = await asyncio.to_thread(localca.ensure, config.config_dir)
    except (OSError, ValueError) as exc:
        logger.warning("no wss:// listener: cannot make or read its certificate (%s)", exc)
        yield None
        return
    trusting: asyncio.Future[Any] | None = None
    if tls.created and options.trust == "auto":
        from agent import truststore

        trusting = asyncio.ensure_future(asyncio.to_thread(truststore.install_for_user, tls))
        if sys.platform.startswith("linux"):
            await trusting  # NSS: a few ms, and pages find the CA trusted once we listen
        # Windows and macOS ask the user to confirm: serve meanwhile.
    port = options.port if options.port is not None else ws_port + 1
    context = tls.context()
    server = serve(service, port=port, ssl_context=context)
    try:
        await server.start()
    except OSError as exc:
        logger.warning("no wss:// listener on port %d: %s (ws:// still serves)", port, exc)
        yield None
        return
    try:
        print(
            f"eid-agent {__version__} listening on wss://127.0.0.1:{server.port}"
            f" (local CA SHA-256 {tls.ca_fingerprint}, certificate expires"
            f" {tls.expires:%Y-%m-%d})",
            flush=True,
        )
        renewer = asyncio.create_task(_renew_periodically(config.config_dir, context, options.trust))
        try:
            yield server
        finally:
            renewer.cancel()
    finally:
        await server.close()


RENEW_CHECK_SECONDS = 12 * 3600
"""How often a running agent checks whether its certificate is due for renewal."""


def renew_tls(config_dir: Path, context: Any, trust: str, now: Any = None) -> Any:
    """Renew the certificate set when due (new CA + leaf, trust stores swapped) and load the
    new leaf into the running listener's ``context`` (new connections get it). The set."""
    from agent import localca

    tls = localca.ensure(config_dir, now=now)
    if tls.created:
        if trust == "auto":
            from agent import truststore

            truststore.install_for_user(tls)
        context.load_cert_chain(tls.files.cert, tls.files.key)
        logger.info("renewed the wss:// certificate; local CA SHA-256 %s", tls.ca_fingerprint)
    return tls


async def _renew_periodically(config_dir: Path, context: Any, trust: str) -> None:
    while True:
        await asyncio.sleep(RENEW_CHECK_SECONDS)
        try:
            await asyncio.to_thread(renew_tls, config_dir, context, trust)
        except Exception:
            logger.exception("renewing the wss:// certificate failed")


def _wss_options(args: argparse.Namespace) -> WssOptions:
    return WssOptions(enabled=args.wss, port=args.wss_port, trust=args.trust_store)


def _cmd_serve(args: argparse.Namespace) -> int:
    config = build_config(args)
    if args.log_file:
        _log_to_file(config)
    interaction = make_interaction(args.interaction, args.script, config.log_dir)
    use_tray = not args.no_tray and has_display() and _session_bus()
    if not use_tray:
        return _serve_in_foreground(config, interaction, _wss_options(args))
    return _serve_with_tray(config, interaction, _wss_options(args))


def _session_bus() -> bool:
    """pystray's Linux backends need a D-Bus session bus; without one, serve headless."""
    if not sys.platform.startswith("linux") or os.environ.get("DBUS_SESSION_BUS_ADDRESS"):
        return True
    logger.warning("no D-Bus session bus: no tray icon (the agent serves all the same)")
    return False


def _install_signal_handlers(loop: asyncio.AbstractEventLoop, stop: asyncio.Event) -> None:
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(sig, stop.set)


def _serve_in_foreground(
    config: Any, interaction: UserInteraction, wss: WssOptions | None = None
) -> int:
    async def main() -> None:
        stop = asyncio.Event()
        _install_signal_handlers(asyncio.get_running_loop(), stop)
        await run_agent(config, interaction, stop=stop, wss=wss)

    try:
        asyncio.run(main())
    except OSError as exc:
        return _port_taken(config, exc)
    return 0


def _port_taken(config: Any, exc: OSError) -> int:
    """A second agent at the same login (or another program) holds the port: say so, exit 3."""
    if exc.errno in (errno.EADDRINUSE, getattr(errno, "WSAEADDRINUSE", -1)):
        print(
            f"eid-agent: port {config.port} is in use (is the agent already running?)",
            file=sys.stderr,
        )
        return 3
    raise exc


def _serve_with_tray(
    config: Any, interaction: UserInteraction, wss: WssOptions | None = None
) -> int:
    """pystray keeps the main thread; the agent's event loop runs on another."""
    try:
        from tray.icon import TrayApp
    except ImportError as exc:
        logger.warning("no tray icon (%s); serving without it", exc)
        return _serve_in_foreground(config, interaction, wss)
    loop = asyncio.new_event_loop()
    stop = asyncio.Event()
    started = threading.Event()
    holder: dict[str, Any] = {}

    def ready(service: Any, server: Any) -> None:
        holder["service"] = service
        started.set()

    def agent_thread() -> None:
        asyncio.set_event_loop(loop)
        try:
            loop.run_until_complete(run_agent(config, interaction, ready=ready, stop=stop, wss=wss))
        except OSError as exc:
            holder["error"] = exc
        except Exception:
            logger.exception("the agent stopped")
        finally:
            started.set()

    thread = threading.Thread(target=agent_thread, name="agent-loop")
    thread.start()
    started.wait()
    service = holder.get("service")
    if service is None:
        thread.join()
        error = holder.get("error")
        return _port_taken(config, error) if isinstance(error, OSError) else 1
    def quit_agent() -> None:
        if not loop.is_closed():
            loop.call_soon_threadsafe(stop.set)

    app = TrayApp(service, _Autostart())
    # Quit in the tray calls service.shutdown(); SIGTERM stops the icon the same way.
    def on_sigterm(*_: object) -> None:
        service.shutdown()
        app.stop()

    signal.signal(signal.SIGTERM, on_sigterm)
    try:
        app.run()
    finally:
        quit_agent()
        thread.join(timeout=15)
    return 0


class _Autostart:
    """The tray's "start at login" switch, on agent.autostart."""

    def is_enabled(self) -> bool:
        from agent import autostart

        return autostart.is_enabled()

    def set_enabled(self, enabled: bool) -> None:
        from agent import autostart

        result = autostart.install() if enabled else autostart.uninstall()
        logger.info("start at login %s: %s", "on" if enabled else "off", result)


def _demo_data_dir() -> Path:
    return Path(os.environ.get("EID_AGENT_DEMO_DIR", Path.cwd() / "var" / "demo"))


def _cmd_demo(args: argparse.Namespace) -> int:
    """The virtual card in the vpcd reader, the agent, and the reference portal."""
    from agent.emulator.beid import BeidCard
    from agent.emulator.pki import Holder, TestPki, make_card_data
    from agent.emulator.vpcd import VpcdCard

    data_dir = _demo_data_dir()
    pki = TestPki.load_or_create(data_dir / "pki")
    holder = Holder()
    card = BeidCard(args.applet, make_card_data(pki, holder, args.applet))
    served = VpcdCard(card, port=args.vpcd_port, latency=args.latency)
    served.insert()
    print(f"virtual Belgian eID (applet {args.applet}) inserted; PIN {holder.pin}", flush=True)
    portal_origin = f"http://localhost:{args.portal_port}"
    portal: subprocess.Popen[bytes] | None = None
    if not args.no_portal:
        cmd = [
            sys.executable, "-m", "examples.portal", "--port", str(args.portal_port),
            "--agent-url", f"ws://127.0.0.1:{args.port}", "--data-dir", str(data_dir / "portal"),
            "--pki-dir", str(data_dir / "pki"),
        ]
        portal = subprocess.Popen(cmd)  # noqa: S603 - our own module
        print(f"reference portal: {portal_origin}/", flush=True)
    args.allow_origin = list(args.allow_origin or []) + [
        portal_origin, f"http://127.0.0.1:{args.portal_port}"
    ]
    try:
        return _cmd_serve(args)
    finally:
        if portal is not None:
            portal.terminate()
            with contextlib.suppress(subprocess.TimeoutExpired):
                portal.wait(5)
        served.remove()


def _common(parser: argparse.ArgumentParser) -> None:
    from agent.core.config import DEFAULT_PORT

    parser.add_argument("--port", type=int, default=DEFAULT_PORT,
                        help=f"WebSocket port (default {DEFAULT_PORT}; machine policy wins)")
    parser.add_argument("--interaction", choices=INTERACTIONS, default="auto",
                        help="how to ask the user: Qt dialogs, the terminal, a test script")
    parser.add_argument("--script", type=Path, help="answers for --interaction scripted (tests only)")
    parser.add_argument("--no-tray", action="store_true", help="no tray icon")
    parser.add_argument("--allow-origin", action="append", metavar="ORIGIN",
                        help="allow this site without asking (development; repeatable)")
    parser.add_argument("--config-dir", help="the user's settings folder (default: per platform)")
    parser.add_argument("--no-log-file", dest="log_file", action="store_false",
                        help="log to the terminal only, not to the log folder")
    parser.add_argument("--no-wss", dest="wss", action="store_false",
                        help="no wss:// listener (ws:// only)")
    parser.add_argument("--wss-port", type=int, default=None,
                        help="wss:// port (default: the ws port + 1, i.e. 24848)")
    parser.add_argument("--trust-store", choices=("auto", "none"), default="auto",
                        help="auto: add a new local CA to this user's browser trust stores")


def add_parser(subparsers: Any) -> None:
    serve = subparsers.add_parser("serve", help="run the agent (WebSocket on localhost, tray)")
    _common(serve)
    serve.set_defaults(func=_cmd_serve)
    demo = subparsers.add_parser(
        "demo", help="run the agent with a virtual Belgian eID card and the reference portal"
    )
    _common(demo)
    demo.add_argument("--applet", choices=("1.7", "1.8"), default="1.8")
    demo.add_argument("--vpcd-port", type=int, default=35963, help="vpcd reader port")
    demo.add_argument("--latency", type=float, default=0.0, help="per-APDU card latency (s)")
    demo.add_argument("--portal-port", type=int, default=8080)
    demo.add_argument("--no-portal", action="store_true")
    demo.set_defaults(func=_cmd_demo)
