"""``tokenrelay aggregator``: run one aggregator instance until SIGINT or SIGTERM.

Creates the topics it reads if they are missing, then hands the process to
Faust's worker, which recovers the tables, joins the group and serves the views.
"""

from __future__ import annotations

import asyncio
import logging
import socket

import faust

from services.aggregator.app import Aggregator
from services.aggregator.views import register
from services.core.settings import Settings
from services.core.topics import ensure_topics

log = logging.getLogger(__name__)


def build(settings: Settings) -> Aggregator:
    instance = settings.aggregator_instance or f"{socket.gethostname()}-{settings.aggregator_port}"
    agg = Aggregator(settings, instance=instance)
    register(agg)
    return agg


def run(settings: Settings) -> None:
    asyncio.run(ensure_topics(settings))
    agg = build(settings)
    log.info(
        "aggregator on http://%s:%d, store %s",
        settings.aggregator_host,
        settings.aggregator_port,
        settings.state_store,
    )
    worker = faust.Worker(
        agg.app,
        loglevel=settings.log_level,
        override_logging=False,
        redirect_stdouts=False,
        quiet=True,
    )
    worker.execute_from_commandline()
