"""supervisord as the native process supervisor: its config, its start, its RPC.

Every program is declared with ``autostart=false``; the launcher starts them in
dependency order, so supervisord only has to keep them alive, restart them, stop
whole process groups and keep their logs.
"""

from __future__ import annotations

import contextlib
import os
import shlex
import subprocess
import sys
import time
import xmlrpc.client
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psutil
from supervisor.xmlrpc import SupervisorTransport

from skiff.files import PRIVATE, write_atomically
from skiff.native.context import Context
from skiff.native.spec import Program

LOG_MAX_BYTES = "20MB"


@dataclass(frozen=True)
class ProcessInfo:
    name: str
    state: str  # supervisord's: STOPPED, STARTING, RUNNING, BACKOFF, EXITED, FATAL...
    pid: int
    uptime: float
    log: Path


def _quote_env(value: str) -> str:
    # supervisord expands %(...)s in its config and splits environment= with shlex.
    return '"' + value.replace("%", "%%").replace("\\", "\\\\").replace('"', '\\"') + '"'


def render_config(ctx: Context, programs: list[Program]) -> str:
    state = ctx.state
    lines = [
        "; written by skiff from src/skiff/services; edits are overwritten",
        "[unix_http_server]",
        f"file={state / 'supervisor.sock'}",
        "chmod=0700",
        "[supervisord]",
        f"logfile={ctx.log_dir / 'supervisord.log'}",
        f"pidfile={state / 'supervisord.pid'}",
        f"childlogdir={ctx.log_dir}",
        "logfile_maxbytes=5MB",
        "loglevel=info",
        # Root is the usual user in containers and CI; programs drop privileges when they must.
        "user=root" if _is_root() else "",
        "[rpcinterface:supervisor]",
        "supervisor.rpcinterface_factory = supervisor.rpcinterface:make_main_rpcinterface",
        "[supervisorctl]",
        f"serverurl=unix://{state / 'supervisor.sock'}",
    ]
    for prog in programs:
        lines += [
            f"[program:{prog.name}]",
            "command=" + shlex.join(prog.command).replace("%", "%%"),
            "autostart=false",
            "autorestart=unexpected",
            "startsecs=3",
            "startretries=1",
            # Airflow's and the JVMs' children outlive a signal to the parent alone.
            "stopasgroup=true",
            "killasgroup=true",
            f"stopwaitsecs={prog.stop_wait}",
            "redirect_stderr=true",
            f"stdout_logfile={log_path(ctx, prog.name)}",
            f"stdout_logfile_maxbytes={LOG_MAX_BYTES}",
            "stdout_logfile_backups=2",
        ]
        if prog.directory:
            lines.append(f"directory={prog.directory}")
        if prog.user:
            lines.append(f"user={prog.user}")
        if prog.env:
            env = ",".join(f"{k}={_quote_env(v)}" for k, v in prog.env.items())
            lines.append(f"environment={env}")
    return "\n".join(line for line in lines if line) + "\n"


def _is_root() -> bool:
    return os.geteuid() == 0


def log_path(ctx: Context, program: str) -> Path:
    return ctx.log_dir / f"{program}.log"


class Supervisor:
    """The running supervisord of one state folder."""

    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx
        self.conf = ctx.state / "supervisord.conf"
        self.sock = ctx.state / "supervisor.sock"

    def _proxy(self) -> Any:
        transport = SupervisorTransport(None, None, serverurl=f"unix://{self.sock}")
        return xmlrpc.client.ServerProxy("http://127.0.0.1", transport=transport)

    @property
    def rpc(self) -> Any:
        return self._proxy().supervisor

    def is_running(self) -> bool:
        if not self.sock.exists():
            return False
        try:
            return self.rpc.getState()["statename"] == "RUNNING"
        except (OSError, xmlrpc.client.Fault):
            return False

    def write_config(self, programs: list[Program]) -> None:
        self.ctx.state.mkdir(parents=True, exist_ok=True)
        # Every program's environment is in it: the platform's secrets.
        write_atomically(self.conf, render_config(self.ctx, programs), PRIVATE)

    def ensure_started(self, programs: list[Program]) -> None:
        """Start supervisord, or make a running one pick up changed programs."""
        self.write_config(programs)
        if self.is_running():
            added, changed, removed = self.rpc.reloadConfig()[0]
            for name in removed:
                self.rpc.stopProcessGroup(name, True)
                self.rpc.removeProcessGroup(name)
            running = {i["group"] for i in self.rpc.getAllProcessInfo()
                       if i["statename"] in ("STARTING", "RUNNING", "BACKOFF")}
            for name in changed:
                self.rpc.stopProcessGroup(name, True)
                self.rpc.removeProcessGroup(name)
                self.rpc.addProcessGroup(name)
                # A running program whose settings changed restarts with them, rather than
                # being left stopped behind a service the caller did not ask to start.
                if name in running:
                    self.rpc.startProcessGroup(name, True)
            for name in added:
                self.rpc.addProcessGroup(name)
            return
        subprocess.run([sys.executable, "-m", "supervisor.supervisord", "-c", str(self.conf)],
                       check=True)
        deadline = time.monotonic() + 15
        while not self.is_running():
            if time.monotonic() > deadline:
                raise RuntimeError(f"supervisord did not start; see {self.ctx.log_dir}/supervisord.log")
            time.sleep(0.1)

    def start(self, program: str) -> None:
        try:
            self.rpc.startProcess(program, False)
        except xmlrpc.client.Fault as fault:
            # ALREADY_STARTED is fine: `up` is idempotent.
            if "ALREADY_STARTED" not in fault.faultString:
                raise

    def _info(self, raw: dict[str, Any]) -> ProcessInfo:
        uptime = float(raw["now"] - raw["start"]) if raw["statename"] == "RUNNING" else 0.0
        return ProcessInfo(raw["name"], raw["statename"], raw["pid"], uptime,
                           log_path(self.ctx, raw["name"]))

    def info(self, program: str) -> ProcessInfo:
        return self._info(self.rpc.getProcessInfo(program))

    def all_info(self) -> dict[str, ProcessInfo]:
        if not self.is_running():
            return {}
        # getAllProcessInfo already carries each program's details: one call, not one per program.
        return {raw["name"]: self._info(raw) for raw in self.rpc.getAllProcessInfo()}

    def stop(self, program: str) -> None:
        """Stop a program and every process it spawned, even those that left its group."""
        try:
            self.rpc.stopProcess(program, True)
        except xmlrpc.client.Fault as fault:
            if "NOT_RUNNING" not in fault.faultString:
                raise
        # Children that changed session (Airflow's task runners can) escape the group
        # kill; they still carry the environment supervisord gave the program.
        _kill_all(self._spawned_by(program))

    def _spawned_by(self, program: str) -> list[psutil.Process]:
        marker = {"SUPERVISOR_PROCESS_NAME": program,
                  "SUPERVISOR_SERVER_URL": f"unix://{self.sock}"}
        found = []
        for proc in psutil.process_iter():
            try:
                env = proc.environ()
            except (psutil.AccessDenied, psutil.NoSuchProcess, psutil.ZombieProcess):
                continue
            if all(env.get(k) == v for k, v in marker.items()):
                found.append(proc)
        return found

    def shutdown(self) -> None:
        if self.is_running():
            self.rpc.shutdown()
            deadline = time.monotonic() + 30
            while self.sock.exists() and time.monotonic() < deadline:
                time.sleep(0.1)


def _kill_all(procs: list[psutil.Process]) -> None:
    alive = [p for p in procs if p.is_running()]
    for proc in alive:
        with contextlib.suppress(psutil.NoSuchProcess):
            proc.terminate()
    _, still = psutil.wait_procs(alive, timeout=5)
    for proc in still:
        with contextlib.suppress(psutil.NoSuchProcess):
            proc.kill()
