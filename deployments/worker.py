"""promoflow's worker: `python -m deployments.worker --pool promoflow`, Prefect's process worker with a fast lane.

Prefect's process worker starts every flow run as a new Python process, which imports Prefect and the flows first:
2-5 s on a busy machine, paid between a registry push and its pipeline running. This worker starts the runs of the
`pipeline` and `watch` deployments (the path from a push to a promotion) in its own long-running process instead,
in a thread each, the way `promoflow webhook --watch-here` hosts them; every other deployment's runs start as
processes, as with `prefect worker start`. It polls the pool, claims runs and reports them to Prefect exactly as
Prefect's worker does (it is one), so both kinds of worker can serve one pool.

What a run in the worker's process keeps: it names this process on its promotions (`host:pid`) and sends
heartbeats like any run, so when the worker dies (killed, or with its machine) `reconcile` carries its promotions on
in a new run, as for a run in a process of its own; an approval wait suspends the run and frees its thread.
What it gives up: cancelling it from the UI does not stop it (no process to kill; it stays Cancelling until it
ends), and a run that crashes the interpreter takes the worker's other runs with it.
"""

from __future__ import annotations

import argparse
import asyncio
import os
from contextlib import suppress
from typing import TYPE_CHECKING, Any

import anyio
import anyio.to_thread
from prefect.workers.process import ProcessJobConfiguration, ProcessWorker, ProcessWorkerResult

if TYPE_CHECKING:
    from prefect.client.schemas.objects import FlowRun
    from prefect.flows import Flow

# The deployments whose runs start in the worker's process: those a registry push starts, both proven to run side
# by side in threads (`webhook --watch-here` hosts them so).
IN_PROCESS = frozenset({"flows.pipeline.pipeline", "flows.watch.watch"})
HOSTED_AT_ONCE = 64  # runs in the worker's process at once; more wait for a thread (`--limit` bounds all runs)


class Worker(ProcessWorker):
    """A process worker that runs the IN_PROCESS deployments' flow runs in its own process."""

    _host_limiter: anyio.CapacityLimiter | None = None

    async def run(
        self,
        flow_run: FlowRun,
        configuration: ProcessJobConfiguration,
        task_status: anyio.abc.TaskStatus[int] | None = None,
    ) -> ProcessWorkerResult:
        entrypoint = await self._entrypoint(flow_run)
        if entrypoint not in IN_PROCESS:
            return await super().run(flow_run, configuration, task_status)
        if task_status is not None:
            task_status.started(os.getpid())
        # A limiter of its own, not anyio's default one that Prefect's client uses too: runs may be many and long.
        # On SIGTERM the worker stops without waiting for them: what they did is recorded, reconcile carries on.
        status = await anyio.to_thread.run_sync(
            run_here, flow_run, entrypoint, abandon_on_cancel=True, limiter=self._hosts()
        )
        return ProcessWorkerResult(status_code=status, identifier=str(os.getpid()))

    def _hosts(self) -> anyio.CapacityLimiter:
        if self._host_limiter is None:  # made in the worker's event loop
            self._host_limiter = anyio.CapacityLimiter(HOSTED_AT_ONCE)
        return self._host_limiter

    async def _entrypoint(self, flow_run: FlowRun) -> str | None:
        if flow_run.deployment_id is None:
            return None
        return (await self.client.read_deployment(flow_run.deployment_id)).entrypoint


def run_here(flow_run: FlowRun, entrypoint: str) -> int:
    """Run a claimed flow run in this process as `python -m prefect.engine` would in its own; 0 when the engine
    took it to an end of its own (completed, failed, suspended), 1 when it could not (the worker marks it
    Crashed). The flow is imported from its module path: promoflow's deployments have no pull steps (a pull step
    may change the working directory, which would move every run of the process)."""
    from prefect.exceptions import Abort, Pause
    from prefect.flow_engine import flow_run_logger, load_flow_run, run_flow
    from prefect.flows import load_flow_from_entrypoint

    flow_run = load_flow_run(flow_run_id=flow_run.id)  # as the engine does: the state it was handed in
    logger = flow_run_logger(flow_run=flow_run)
    try:
        flow: Flow[..., Any] = load_flow_from_entrypoint(entrypoint, use_placeholder_flow=False)
    except Exception:
        logger.error("Unexpected exception encountered when trying to load flow", exc_info=True)
        return 1
    # the orchestrator ended it here, it waits suspended, or it failed: the engine recorded each on the run
    with suppress(Abort, Pause, Exception):
        run_flow(flow, flow_run=flow_run, error_logger=logger)  # type: ignore[arg-type]  # as prefect.engine does
    return 0


def main(argv: list[str] | None = None) -> None:
    """Start the worker, like `prefect worker start --pool POOL`; SIGTERM or Ctrl-C stops it."""
    from prefect.settings import PREFECT_WORKER_HEARTBEAT_SECONDS, PREFECT_WORKER_PREFETCH_SECONDS
    from prefect.utilities.processutils import setup_signal_handlers_worker

    parser = argparse.ArgumentParser(prog="python -m deployments.worker", description=main.__doc__)
    parser.add_argument("--pool", default="promoflow", help="the process work pool (default: promoflow)")
    parser.add_argument("--name", help="the worker's name (default: Prefect's, unique)")
    parser.add_argument("--with-healthcheck", action="store_true", help="serve /health on port 8080, as Prefect's")
    args = parser.parse_args(argv)
    setup_signal_handlers_worker(os.getpid(), "the promoflow worker", print)

    async def work() -> None:
        async with Worker(
            name=args.name,
            work_pool_name=args.pool,
            prefetch_seconds=PREFECT_WORKER_PREFETCH_SECONDS.value(),
            heartbeat_interval_seconds=int(PREFECT_WORKER_HEARTBEAT_SECONDS.value()),
        ) as worker:
            await worker.start(with_healthcheck=args.with_healthcheck)

    with suppress(KeyboardInterrupt, asyncio.CancelledError):
        asyncio.run(work())


if __name__ == "__main__":
    main()
