"""The gateway as a service part: event streams, reads of job, batch and queue state, and
the dashboard (``/ui``) that shows them.

It owns the process's fan-out consumer and its pool of replay readers: started
with the process, drained (every stream ends, its client resumes elsewhere)
when the server begins to shut down, closed last.
"""

from __future__ import annotations

from fastapi import APIRouter

from services.core.runtime import Runtime, ServicePart
from services.gateway.chat_completions import chat_routes
from services.gateway.console_routes import make_console_router
from services.gateway.delivery import install_quiet_cut_offs
from services.gateway.fanout import Fanout
from services.gateway.lean_events import lean_events_route
from services.gateway.replay import ReplayReaders
from services.gateway.router import make_router
from services.gateway.state_routes import make_state_router
from services.gateway.submit_stream import job_streams
from services.gateway.tenant_routes import make_tenant_router
from services.gateway.ui import ui_routes
from services.gateway.watch import Watches


def create(rt: Runtime) -> ServicePart:
    settings = rt.settings
    topic = settings.topics.tokens
    fanout = Fanout(
        rt.clients,
        topic,
        rt.admin,
        settings.stream_buffer_events,
        settings.stream_recent_records,
        settings.stream_heartbeat_s,
    )
    fanout.breakdown = rt.breakdown
    replays = ReplayReaders(rt.clients, topic, settings.stream_replay_readers)
    watches = Watches(fanout, replays, rt.state)
    rt.job_streams = job_streams(watches)
    router = APIRouter()
    router.include_router(make_router(rt, watches))
    router.include_router(make_state_router(rt))
    router.include_router(make_console_router(rt))
    router.include_router(make_tenant_router(rt))

    async def start() -> None:
        install_quiet_cut_offs()
        await fanout.start()

    async def stop() -> None:
        await fanout.stop()
        await replays.close()

    return ServicePart(
        name="gateway",
        router=router,
        start=start,
        stop=stop,
        drain=fanout.end_streams,
        checks=[fanout.ready],
        lean_routes=[
            lean_events_route("/v1/jobs/{job_id}/events", rt.access, watches),
            *chat_routes(rt, watches),
            *ui_routes(),
        ],
    )
