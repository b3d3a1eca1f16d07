"""``eid-agent serve``, the resident agent, wired from the pieces: PC/SC backend, operations
core, WebSocket server, interaction provider and, when there is a display, the tray.
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
from agent.core.control import Notice
from agent.core.interaction import UserInteraction

logger = logging.getLogger(__name__)

INTERACTIONS = ("auto", "dialogs", "console", "scripted", "none")


def has_display() -> bool:
    if sys.platform in ("win32", "darwin"):
        return True
    return bool(os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY"))


def make_interaction(kind: str, script: Path | None = None, log_dir: Path | None = None) -> UserInteraction:
    """The provider for ``--interaction``; ``auto``: dialogs, else console, else none."""
    if kind == "scripted":
        from agent.app.scripted import ScriptedInteraction

        if script is None:
            raise SystemExit("--interaction scripted needs --script FILE")
        return ScriptedInteraction(script)
    if kind == "none":
        from tray.headless import NoUserInterface

        return NoUserInterface()
    if kind == "console":
        if sys.stdin is None or not sys.stdin.isatty():
            raise SystemExit("--interaction console needs a terminal")
        from agent.app.console import ConsoleInteraction

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
    from agent.core.policy import load_policy

    policy = load_policy()
    if args.allow_origin:
        # A developer's or demo's own pre-approval; machine policy still applies on top.
        policy = dataclasses.replace(
            policy, allowed_origins=tuple(policy.allowed_origins) + tuple(args.allow_origin)
        )
    # An explicit port (machine policy, --port) is used as is or not at all; without one
    # the agent takes the first free slot of the fixed range (agent.ws.ports).
    explicit = policy.port or args.port
    args.port_explicit = explicit is not None
    config = AgentConfig(policy=policy, log_level=args.log_level)
    if explicit is not None:
        config = dataclasses.replace(config, port=explicit)
    if args.config_dir:
        config = dataclasses.replace(config, config_dir=Path(args.config_dir))
    return config


def _log_to_file(config: Any) -> None:
    from agent.logging import private_file_handler

    try:
        config.log_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        handler = private_file_handler(config.log_dir / "eid-agent.log")
    except OSError as exc:
        logger.warning("no log file in %s: %s", config.log_dir, exc)
        return
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    logging.getLogger().addHandler(handler)


async def run_agent(
    config: Any,
    interaction: UserInteraction,
    *,
    ready: Callable[[Any, Any], None] | None = None,
    stop: asyncio.Event | None = None,
    port_explicit: bool = True,
    allow_http_loopback: bool = False,
    wss: WssOptions | None = None,
) -> None:
    """Serve until ``stop`` is set (or the task is cancelled); ``wss://`` beside ``ws://``.

    ``port_explicit``: serve on ``config.port`` or fail; otherwise take a free slot. The
    ``wss://`` listener takes the slot's wss port (or ``wss.port``) from the same reservation
    and is served by the same server (same checks and limits).
    """
    from agent.app.memory import release_free_memory
    from agent.core.service import AgentService
    from agent.pcsc import PcscBackend
    from agent.webeid.channel import serve_channel
    from agent.ws import DEFAULT_HOSTS, serve
    from agent.ws.ports import reserve

    wss = wss or WssOptions()
    reservation = reserve(
        DEFAULT_HOSTS, config.port if port_explicit else None, wss.port if wss.enabled else None
    )
    for squat in reservation.squats:
        warning = squat_warning(squat, reservation.ws_port)
        logger.warning("%s", warning)
        print(f"eid-agent: WARNING: {warning}", file=sys.stderr, flush=True)
    config = dataclasses.replace(config, port=reservation.ws_port)
    # The certificate set is read (or, at a first start, made by a child process) while the
    # service starts and identifies the cards.
    preparing = asyncio.ensure_future(
        _prepare_tls(config, wss) if wss.enabled and reservation.wss_sockets else _no_tls()
    )
    backend = PcscBackend()
    service = AgentService(backend, interaction, config=config, on_idle=release_free_memory)
    stop = stop or asyncio.Event()
    try:
        await service.start()
    finally:
        tls = await preparing
    if tls is None:  # no wss:// (switched off, its port taken, or no certificate)
        for sock in reservation.take_wss_sockets():
            sock.close()
    context = tls.context() if tls is not None else None
    renewer: asyncio.Task[None] | None = None
    try:
        async with serve(
            service, reservation=reservation, allow_http_loopback=allow_http_loopback,
            ssl_context=context,
        ) as server, serve_channel(service, config.config_dir):
            if tls is not None and server.wss_port:  # before the ws line: tests wait for that
                _announce(
                    f"eid-agent {__version__} listening on wss://127.0.0.1:{server.wss_port}"
                    f" (local CA SHA-256 {tls.ca_fingerprint}, certificate expires"
                    f" {tls.expires:%Y-%m-%d})"
                )
                renewer = asyncio.create_task(_renew_periodically(config.config_dir, context, wss.trust))
            _announce(f"eid-agent {__version__} listening on ws://127.0.0.1:{server.port}")
            if ready is not None:
                ready(service, server)
            from agent.app.memory import freeze_startup_objects

            freeze_startup_objects()
            waits = [asyncio.ensure_future(stop.wait()), asyncio.ensure_future(service.wait_shutdown())]
            try:
                await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
            finally:
                for waiter in waits:
                    waiter.cancel()
    finally:
        if renewer is not None:
            renewer.cancel()
        await service.stop()


def _announce(line: str) -> None:
    """One line on stdout in one write, so a log line on stderr (often the same pipe) cannot
    land between the URL and its newline."""
    sys.stdout.write(line + "\n")
    sys.stdout.flush()


@dataclasses.dataclass(frozen=True)
class WssOptions:
    """The ``wss://`` listener: on the wss port of the agent's slot (24848 + 2k), or next to
    an explicit ``--port``, or ``port`` when given.

    ``trust``: ``auto`` adds a newly made CA to this user's browser trust stores (and swaps
    it on renewal); ``none`` leaves the stores alone (``eid-agent install-certificate``).
    """

    enabled: bool = True
    port: int | None = None
    trust: str = "auto"


async def _prepare_tls(config: Any, options: WssOptions) -> Any:
    """The certificate set for ``wss://`` (made at first start, trusted per ``options``), or
    None when it cannot be made or read (``ws://`` still serves).

    The set is read with the standard library (:mod:`agent.tls.served`); making one is left
    to a short-lived ``eid-agent prepare-certificate`` process, so this resident process
    never loads ``cryptography``."""
    from agent.tls import served

    files = served.TlsFiles.in_config_dir(config.config_dir)
    tls = await asyncio.to_thread(served.read, files)
    if tls is None:
        await asyncio.to_thread(make_certificate, config.config_dir, options.trust)
        tls = await asyncio.to_thread(served.read, files)
        if tls is None:
            logger.warning("no wss:// listener: its certificate could not be made or read")
    return tls


async def _no_tls() -> None:
    return None


def make_certificate(config_dir: Path, trust: str) -> bool:
    """Have ``eid-agent prepare-certificate --renew`` make a new set (and trust it when
    ``trust`` is ``auto``). Returns when the set is on disk: on Linux after the NSS stores
    were updated too (a few ms; pages then find the CA trusted once we listen); on Windows and
    macOS, which ask the user to confirm, without waiting for that. False when it failed."""
    from agent.app.autostart import agent_command
    from agent.app.tls_commands import PREPARED

    command = [*agent_command("prepare-certificate"), "--config-dir", str(config_dir),
               "--trust", trust, "--renew"]
    try:
        child = subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                 text=True)
    except OSError as exc:
        logger.warning("cannot start %s: %s", command[0], exc)
        return False
    assert child.stdout is not None
    made = child.stdout.readline().strip() == PREPARED
    if sys.platform.startswith("linux") or not made:
        try:
            child.wait(timeout=120)
        except subprocess.TimeoutExpired:
            child.kill()
            child.wait()
    else:
        threading.Thread(target=child.wait, name="prepare-certificate", daemon=True).start()
    if not made:
        logger.warning("making the wss:// certificate failed (exit status %s)", child.returncode)
    return made


RENEW_CHECK_SECONDS = 12 * 3600
"""How often a running agent checks whether its certificate is due for renewal."""


def renew_tls(config_dir: Path, context: Any, trust: str, now: Any = None) -> Any:
    """Renew the certificate set when due (new CA + leaf, trust stores swapped) and load the
    new leaf into the running listener's ``context`` (new connections get it). The new set,
    or None when the current one is not due."""
    from agent.tls import served

    files = served.TlsFiles.in_config_dir(config_dir)
    if served.read(files, now=now) is not None:
        return None
    make_certificate(config_dir, trust)
    tls = served.read(files)
    if tls is not None:
        context.load_cert_chain(files.cert, files.key)
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


def run(args: argparse.Namespace) -> int:
    config = build_config(args)
    if args.log_file:
        _log_to_file(config)
    interaction = make_interaction(args.interaction, args.script, config.log_dir)
    use_tray = not args.no_tray and has_display() and _session_bus()
    if not use_tray:
        return _serve_in_foreground(config, interaction, args)
    return _serve_with_tray(config, interaction, args)


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


def _serve_options(args: argparse.Namespace) -> dict[str, Any]:
    return {
        "port_explicit": getattr(args, "port_explicit", True),
        "allow_http_loopback": getattr(args, "allow_http_loopback", False),
        "wss": _wss_options(args),
    }


def _serve_in_foreground(config: Any, interaction: UserInteraction, args: argparse.Namespace) -> int:
    async def main() -> None:
        stop = asyncio.Event()
        _install_signal_handlers(asyncio.get_running_loop(), stop)
        await run_agent(config, interaction, stop=stop, **_serve_options(args))

    try:
        asyncio.run(main())
    except OSError as exc:
        return _port_taken(config, exc)
    return 0


def squat_warning(squat: Any, used_port: int) -> str:
    """What the user is told when another program holds one address of a slot."""
    return (
        f"another program holds {squat} (the agent's address); a page could reach it "
        f"instead of the agent, so the agent uses port {used_port}. Find and stop that program."
    )


def _port_taken(config: Any, exc: OSError) -> int:
    """A second agent at the same login (or another program) holds the port: say so, exit 3."""
    from agent.ws.ports import AlreadyRunningError, NoFreeSlotError, PortSquattedError

    if isinstance(exc, PortSquattedError):
        print(
            f"eid-agent: refusing to serve on port {config.port}: another program holds "
            f"{exc.squat} while the other loopback address is free, so a page could reach "
            "that program instead of the agent. Stop it, or choose another --port.",
            file=sys.stderr,
        )
        return 3
    if isinstance(exc, AlreadyRunningError):
        print(f"eid-agent: already running for this user (port {exc.port})", file=sys.stderr)
        return 3
    if isinstance(exc, NoFreeSlotError):
        held = ", ".join(str(s) for s in exc.squats)
        print(
            f"eid-agent: {exc.strerror} (agents of other users, or other programs"
            + (f"; half-held by another program: {held}" if held else "")
            + "). Use --port to choose one.",
            file=sys.stderr,
        )
        return 3
    if exc.errno in (errno.EADDRINUSE, getattr(errno, "WSAEADDRINUSE", -1)):
        print(
            f"eid-agent: port {config.port} is in use (is the agent already running?)",
            file=sys.stderr,
        )
        return 3
    raise exc


def _serve_with_tray(config: Any, interaction: UserInteraction, args: argparse.Namespace) -> int:
    """pystray keeps the main thread; the agent's event loop runs on another."""
    try:
        from tray.icon import TrayApp
    except ImportError as exc:
        logger.warning("no tray icon (%s); serving without it", exc)
        return _serve_in_foreground(config, interaction, args)
    loop = asyncio.new_event_loop()
    stop = asyncio.Event()
    started = threading.Event()
    holder: dict[str, Any] = {}

    def ready(service: Any, server: Any) -> None:
        holder["service"] = service
        holder["squats"] = list(server.reservation.squats) if server.reservation else []
        holder["port"] = server.port
        started.set()

    def agent_thread() -> None:
        asyncio.set_event_loop(loop)
        try:
            loop.run_until_complete(
                run_agent(config, interaction, ready=ready, stop=stop, **_serve_options(args))
            )
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
    for squat in holder.get("squats", []):  # shown once the icon is up
        app.notify_on_start(Notice.PORT_TAKEN, squat_warning(squat, holder["port"]))
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
    """The tray's "start at login" switch, on agent.app.autostart."""

    def is_enabled(self) -> bool:
        from agent.app import autostart

        return autostart.is_enabled()

    def set_enabled(self, enabled: bool) -> None:
        from agent.app import autostart

        result = autostart.install() if enabled else autostart.uninstall()
        logger.info("start at login %s: %s", "on" if enabled else "off", result)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The options of ``serve`` (the emulator's ``demo`` takes them too)."""
    from agent.core.config import DEFAULT_PORT

    parser.add_argument("--port", type=int, default=None,
                        help=f"WebSocket port (default: the first free of {DEFAULT_PORT}, "
                             f"{DEFAULT_PORT + 2}, ... {DEFAULT_PORT + 14}; machine policy wins)")
    parser.add_argument("--allow-http-loopback", action="store_true",
                        help="accept pages from http://localhost, 127.0.0.1, [::1] (development)")
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
                        help="wss:// port (default: the slot's, the ws port + 1: 24848 + 2k)")
    parser.add_argument("--trust-store", choices=("auto", "none"), default="auto",
                        help="auto: add a new local CA to this user's browser trust stores")


def add_parser(subparsers: Any) -> None:
    serve = subparsers.add_parser("serve", help="run the agent (WebSocket on localhost, tray)")
    add_arguments(serve)
    serve.set_defaults(func=run)
