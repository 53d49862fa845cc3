"""gRPC TrainerService: jobs (StartJob, GetJob, WatchJob, ListJobs, CancelJob) and the registry (ListModels,
GetModel, Promote, Rollback)."""

from __future__ import annotations

import logging
from datetime import datetime, timezone

from distillery_services.trainer import data_access
from distillery_services.trainer.config import TrainerSettings
from distillery_services.trainer.factory import multi_student_for, resolve_kind, student_for
from distillery_services.trainer.jobs import FINAL, JobManager, JobRecord
from distillery_services.trainer.request import TrainRequest, check_labels_exist, split_params
from prometheus_client import Counter, Gauge

from distillery import identifiers
from distillery.filters import FilterCatalog
from distillery.redact import public
from distillery.registry import ModelInfo, ModelRegistry, RegistryError
from distillery.rpc.errors import NotFoundError, PreconditionError, handle_errors
from distillery.v1 import common_pb2, events_pb2, trainer_pb2, trainer_pb2_grpc

logger = logging.getLogger(__name__)

KIND_TO_ENUM = {
    "lexical": trainer_pb2.STUDENT_KIND_LEXICAL,
    "probe": trainer_pb2.STUDENT_KIND_PROBE,
    "finetune": trainer_pb2.STUDENT_KIND_FINETUNE,
    "multi": trainer_pb2.STUDENT_KIND_MULTI,
    "ensemble": trainer_pb2.STUDENT_KIND_ENSEMBLE,
    "stack": trainer_pb2.STUDENT_KIND_STACK,
}
ENUM_TO_KIND = {v: k for k, v in KIND_TO_ENUM.items()}

JOBS_STARTED = Counter("distillery_trainer_jobs_started_total", "Training jobs accepted.")
JOBS_FINISHED = Counter("distillery_trainer_jobs_finished_total", "Training jobs that ended, by state.", ["state"])
JOBS_RUNNING = Gauge("distillery_trainer_jobs_running", "Training jobs not yet final.")
PROMOTIONS = Counter("distillery_trainer_promotions_total", "Model versions promoted.")


class EventPublisher:
    """Publishes ModelPromoted on ``models.events`` through distillery.bus when a bootstrap is configured."""

    def __init__(self, bootstrap: str, topic: str):
        self.topic = topic
        self._producer = None
        if bootstrap:
            try:
                from distillery import bus
            except ImportError as exc:
                raise ValueError(f"kafka_bootstrap is set but distillery.bus is not available: {exc}") from None
            self._producer = bus.make_producer(bootstrap, client_id="trainer")
            self._headers = bus.make_headers

    def publish(self, info: ModelInfo, previous: str) -> None:
        if self._producer is None:
            return
        event = events_pb2.ModelPromoted(
            filter=common_pb2.FilterRef(name=info.filter_name, version=info.filter_version),
            version=info.version_id, previous_version=previous, uri=info.uri,
            promoted_at=datetime.now(timezone.utc).isoformat(timespec="seconds"),
        )
        future = self._producer.send(self.topic, key=info.filter_name.encode(), value=event.SerializeToString(),
                                     headers=list(self._headers()))
        future.get(timeout=30)  # acks=all: the promotion is durable on the bus before the RPC answers

    def close(self) -> None:
        close = getattr(self._producer, "close", None)
        if close:
            close()


def model_version_pb(info: ModelInfo) -> trainer_pb2.ModelVersion:
    return trainer_pb2.ModelVersion(
        filter=common_pb2.FilterRef(name=info.filter_name, version=info.filter_version),
        version=info.version_id, student_kind=KIND_TO_ENUM.get(info.kind, 0), created_at=info.created_at,
        metrics={k: float(v) for k, v in info.metrics.items()}, dataset_hash=info.dataset_hash,
        promoted=info.promoted, uri=info.uri, multi_model_id=str(info.multi.get("model_id", "")),
    )


def job_pb(job: JobRecord) -> trainer_pb2.Job:
    return trainer_pb2.Job(
        job_id=job.job_id, filter=common_pb2.FilterRef(name=job.filter_name, version=job.filter_version),
        student_kind=KIND_TO_ENUM.get(job.kind, 0), state=trainer_pb2.JobState.Value(f"JOB_STATE_{job.state}"),
        progress=job.progress,
        message=public(f"{job.origin}; {job.message}" if job.origin else job.message, what="job message"),
        model_version=job.model_version, metrics=job.metrics,
        error=public(job.error, what="job error") if job.error else "", created_at=job.created_at, updated_at=job.updated_at,
        filters=[_ref_pb(ref) for ref in job.filters], ray_address=job.ray_address,
        stages=[trainer_pb2.JobStage(name=st["name"], done=int(st["done"]), total=int(st["total"]),
                                     parts_by_node={k: int(v) for k, v in st["parts_by_node"].items()},
                                     node_ips=dict(st.get("node_ips", {})))
                for st in job.stages],
    )


def _ref_pb(ref: str) -> common_pb2.FilterRef:
    name, _, version = ref.partition("/")
    return common_pb2.FilterRef(name=name, version=int(version.lstrip("v") or 0))


def _source(ref: trainer_pb2.DatasetRef) -> data_access.DataSource:
    kind = ref.WhichOneof("source") or data_access.LABEL_STORE
    return data_access.DataSource(kind, "" if kind == data_access.LABEL_STORE else getattr(ref, kind))


def _sources(datasets, labels_paths) -> list[data_access.DataSource]:
    """DatasetRefs, or the deprecated labels paths read as data-root-relative paths ('' = the label store)."""
    if datasets:
        return [_source(ref) for ref in datasets]
    return [data_access.DataSource(data_access.DATA_PATH, p) if p else data_access.DataSource()
            for p in labels_paths]


def _job_filters(job: JobRecord) -> list[tuple[str, int]]:
    """(name, version) of every filter a job trains."""
    if not job.filters:
        return [(job.filter_name, job.filter_version)]
    return [(r.name, r.version) for r in map(_ref_pb, job.filters)]


class TrainerServicer(trainer_pb2_grpc.TrainerServiceServicer):
    def __init__(self, settings: TrainerSettings, catalog: FilterCatalog):
        self.settings = settings
        self.catalog = catalog
        self.registry = ModelRegistry(settings.resolved_registry())
        self.events = EventPublisher(settings.kafka_bootstrap, settings.models_topic)
        self.jobs = JobManager(settings.jobs_dir, settings.max_concurrent_jobs, on_success=self._job_succeeded,
                               ray_address=getattr(settings, "ray_address", ""))  # else RAY_ADDRESS, else local
        self._previous: dict[str, dict[str, str]] = {}  # job id -> {filter name: version promoted before}
        self.retrainer = None
        if settings.retrain_enabled:
            from distillery_services.trainer.retrain import AutoRetrainer

            self.retrainer = AutoRetrainer(settings, catalog, self.registry, self.jobs, self.start_job)
            self.retrainer.start()

    def _job_succeeded(self, job: JobRecord) -> None:
        JOBS_FINISHED.labels("SUCCEEDED").inc()
        previous = self._previous.pop(job.job_id, {})
        for name, _ in _job_filters(job):
            promoted = self.registry.promoted(name)
            if promoted and promoted.version_id == job.model_version:
                PROMOTIONS.inc()
                self.events.publish(promoted, previous.get(name, ""))

    def close(self) -> None:
        if self.retrainer is not None:
            self.retrainer.stop()
        self.jobs.stop()
        self.events.close()

    def start_job(self, spec, kind: str, params: dict[str, str], seed: int = 0, promote: bool = False,
                  labels_path: str = "", origin: str = "", promote_if_better: bool = False) -> JobRecord:
        """Validate and queue a training job (StartJob and automatic retrains both come through here)."""
        kind = resolve_kind(spec, kind)
        params = dict(params)
        _, student_params = split_params(params)
        student_for(spec, kind, student_params, seed)  # rejects unknown or invalid parameters now
        # labels_path was resolved inside the data root by data_access (StartJob) or is '' (the label store).
        train = TrainRequest(
            kind=kind, labels_path=labels_path, label_store_url=self.settings.resolved("label_store_url"),
            seed=seed, params=params, promote=promote,
            registry_root=self.settings.resolved("registry_root"),
            datasets_dir=self.settings.resolved("datasets_dir"),
            embed_cache_dir=self.settings.resolved("embed_cache_dir"),
            promote_if_better=promote_if_better, promote_tolerance=self.settings.retrain_promote_tolerance,
        )
        current = self.registry.promoted(spec.name)
        job = self.jobs.start(spec, kind, train.to_dict(), origin=origin)
        if current:
            self._previous[job.job_id] = {spec.name: current.version_id}
        JOBS_STARTED.inc()
        logger.info("job started", extra={"fields": {"job_id": job.job_id, "filter": spec.ref, "kind": kind,
                                                     **({"origin": origin} if origin else {})}})
        return job

    def start_multi_job(self, specs, params: dict[str, str], seed: int = 0, promote: bool = False,
                        labels_paths: list[str] | None = None) -> JobRecord:
        """Validate and queue one multi student for several filters (``specs``, in request order);
        ``labels_paths`` are resolved inside the data root (data_access), '' for the label store."""
        params = dict(params)
        _, student_params = split_params(params)
        multi_student_for(specs, student_params, seed)  # at least two distinct filters, valid parameters
        labels_paths = list(labels_paths or [])
        if labels_paths and len(labels_paths) != len(specs):
            raise ValueError(f"labels_paths has {len(labels_paths)} entries for {len(specs)} filters; give one "
                             "per filter in the order of `filters` (an empty entry reads the label store)")
        paths: dict[str, str] = {}
        store_url = self.settings.resolved("label_store_url")
        for spec, given in zip(specs, labels_paths or [""] * len(specs)):
            if given:
                paths[spec.ref] = given
            check_labels_exist(spec, paths.get(spec.ref, ""), store_url)
        train = TrainRequest(
            kind="multi", label_store_url=store_url, seed=seed, params=params, promote=promote,
            registry_root=self.settings.resolved("registry_root"),
            datasets_dir=self.settings.resolved("datasets_dir"),
            embed_cache_dir=self.settings.resolved("embed_cache_dir"),
            filters=[s.ref for s in specs], labels_paths=paths,
        )
        previous = {s.name: p.version_id for s in specs if (p := self.registry.promoted(s.name))}
        job = self.jobs.start(specs[0], "multi", train.to_dict(), specs=list(specs))
        self._previous[job.job_id] = previous
        JOBS_STARTED.inc()
        logger.info("job started", extra={"fields": {"job_id": job.job_id, "filters": train.filters,
                                                     "kind": "multi"}})
        return job

    def _start_multi(self, request, kind: str) -> JobRecord:
        if kind not in ("", "multi"):
            raise ValueError(f"training several filters at once needs student_kind STUDENT_KIND_MULTI, not "
                             f"{trainer_pb2.StudentKind.Name(request.student_kind)}")
        refs = list(request.filters)
        if request.filter.name and not any(r.name == request.filter.name and r.version in (0, request.filter.version)
                                           for r in refs):
            refs.insert(0, request.filter)
        if len(refs) < 2:
            raise ValueError("a multi student trains several filters jointly: name at least two filters in "
                             "`filters`")
        if (request.labels_path or request.HasField("dataset")) and not (request.labels_paths or request.datasets):
            raise ValueError("a multi job reads one dataset per filter: set datasets (or labels_paths) in the order "
                             "of `filters`, not dataset or labels_path")
        specs = [self.catalog.get(r.name, r.version) for r in refs]
        sources = _sources(request.datasets, request.labels_paths)
        if sources and len(sources) != len(specs):
            raise ValueError(f"datasets has {len(sources)} entries for {len(specs)} filters; give one per filter "
                             "in the order of `filters` (an unset entry reads the label store)")
        paths = [data_access.resolve(spec, source, self._data_roots(), f"datasets[{i}]")
                 for i, (spec, source) in enumerate(zip(specs, sources))]
        return self.start_multi_job(specs, dict(request.params), request.seed, request.promote, paths)

    def _data_roots(self) -> data_access.DataRoots:
        return data_access.DataRoots(self.settings.resolved("data_root"), self.settings.resolved("datasets_dir"))

    @handle_errors
    def StartJob(self, request, context):
        identifiers.check_filter_ref(request.filter, required=not request.filters)
        identifiers.check_filter_refs(request.filters)
        kind = ENUM_TO_KIND.get(request.student_kind, "")
        if request.filters or kind == "multi":
            return job_pb(self._start_multi(request, kind))
        spec = self.catalog.get(request.filter.name, request.filter.version)
        source = (_source(request.dataset) if request.HasField("dataset")
                  else _sources([], [request.labels_path])[0])
        labels_path = data_access.resolve(spec, source, self._data_roots())
        job = self.start_job(spec, ENUM_TO_KIND.get(request.student_kind, ""), dict(request.params),
                             request.seed, request.promote, labels_path)
        return job_pb(job)

    @handle_errors
    def GetJob(self, request, context):
        return job_pb(self.jobs.get(identifiers.job_id(request.job_id)))

    @handle_errors
    def WatchJob(self, request, context):
        job = self.jobs.get(identifiers.job_id(request.job_id))
        yield job_pb(job)
        while job.state not in FINAL and context.is_active():
            new = self.jobs.wait_change(job.job_id, job.seq, timeout=1.0)
            if new.seq != job.seq:
                yield job_pb(new)
            job = new

    @handle_errors
    def ListJobs(self, request, context):
        identifiers.check_filter_ref(request.filter, required=False)
        jobs = [j for j in self.jobs.list()
                if any((not request.filter.name or name == request.filter.name)
                       and (not request.filter.version or version == request.filter.version)
                       for name, version in _job_filters(j))]
        jobs.sort(key=lambda j: (j.created_at, j.job_id), reverse=True)
        if request.limit:
            jobs = jobs[: request.limit]
        return trainer_pb2.ListJobsResponse(jobs=[job_pb(j) for j in jobs])

    @handle_errors
    def ListModels(self, request, context):
        identifiers.check_filter_ref(request.filter, required=False)
        name = request.filter.name or None
        try:
            infos = self.registry.list(name)
        except RegistryError as exc:
            raise NotFoundError(str(exc)) from None
        if request.filter.version:
            infos = [i for i in infos if i.filter_version == request.filter.version]
        return trainer_pb2.ListModelsResponse(models=[model_version_pb(i) for i in infos])

    @handle_errors
    def Promote(self, request, context):
        if not request.filter.name or not request.version:
            raise ValueError("Promote needs filter.name and version")
        identifiers.check_filter_ref(request.filter)
        identifiers.model_version(request.version, "version")
        before = self.registry.promoted(request.filter.name)
        try:
            info = self.registry.promote(request.filter.name, request.version)
        except RegistryError as exc:
            raise NotFoundError(str(exc)) from None
        if request.filter.version and info.filter_version != request.filter.version:
            raise ValueError(f"version {request.version} belongs to {info.filter_ref}, not "
                             f"{request.filter.name}/v{request.filter.version}")
        PROMOTIONS.inc()
        self.events.publish(info, before.version_id if before else "")
        logger.info("promoted", extra={"fields": {"filter": info.filter_name, "version": info.version_id}})
        return model_version_pb(info)

    @handle_errors
    def CancelJob(self, request, context):
        job = self.jobs.cancel(identifiers.job_id(request.job_id))
        if job.state == "CANCELLED":
            self._previous.pop(job.job_id, None)
            logger.info("job cancelled", extra={"fields": {"job_id": job.job_id}})
        return job_pb(job)

    @handle_errors
    def GetModel(self, request, context):
        name = request.filter.name
        if not name:
            raise ValueError("GetModel needs filter.name")
        try:
            if request.version in ("", "promoted"):
                info = self.registry.promoted(name)
                if info is None:
                    raise NotFoundError(f"no version of {name} is promoted")
            else:
                info = self.registry.get(name, request.version)
        except RegistryError as exc:
            raise NotFoundError(str(exc)) from None
        if request.filter.version and info.filter_version != request.filter.version:
            raise NotFoundError(f"version {info.version_id} belongs to {info.filter_ref}, not "
                                f"{name}/v{request.filter.version}")
        return model_version_pb(info)

    @handle_errors
    def Rollback(self, request, context):
        name = request.filter.name
        if not name:
            raise ValueError("Rollback needs filter.name")
        before = self.registry.promoted(name)
        if before is None:
            raise NotFoundError(f"no version of {name} is promoted")
        try:
            info = self.registry.rollback(name)
        except RegistryError as exc:
            raise PreconditionError(str(exc)) from None
        PROMOTIONS.inc()
        self.events.publish(info, before.version_id)
        logger.info("rolled back", extra={"fields": {"filter": name, "from": before.version_id,
                                                     "to": info.version_id}})
        return model_version_pb(info)
