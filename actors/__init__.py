"""actors: a small, typed actor runtime with OTP-style supervision, on thespian.

Actors are hosted in a thespian ``simpleSystemBase`` ActorSystem driven from the asyncio
event loop (see ``Runtime``). Write behaviours by subclassing ``Actor``; declare trees
with ``supervisor(...)`` and ``ChildSpec``; start with ``Runtime.start``.
"""

from actors.actor import Actor, Reply, TimerHandle
from actors.errors import (
    ActorError,
    ActorNotFound,
    ActorStopped,
    AskTimeout,
    CrashNotAllowed,
    InjectedCrash,
    RuntimeClosed,
    StopRefused,
)
from actors.intensity import RestartIntensity
from actors.loop import Clock, LoopClock, Runtime
from actors.ref import ActorRef
from actors.supervisor import (
    ChildSpec,
    Restart,
    RestartChild,
    RestartIntensityExceeded,
    StartChild,
    Strategy,
    Supervisor,
    TerminateChild,
    WhichChildren,
    supervisor,
)

__all__ = [
    "Actor",
    "ActorError",
    "ActorNotFound",
    "ActorRef",
    "ActorStopped",
    "AskTimeout",
    "ChildSpec",
    "Clock",
    "CrashNotAllowed",
    "InjectedCrash",
    "LoopClock",
    "Reply",
    "Restart",
    "RestartChild",
    "RestartIntensity",
    "RestartIntensityExceeded",
    "Runtime",
    "RuntimeClosed",
    "StartChild",
    "StopRefused",
    "Strategy",
    "Supervisor",
    "TerminateChild",
    "TimerHandle",
    "WhichChildren",
    "supervisor",
]
