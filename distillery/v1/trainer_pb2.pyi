from distillery.v1 import common_pb2 as _common_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class StudentKind(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    STUDENT_KIND_UNSPECIFIED: _ClassVar[StudentKind]
    STUDENT_KIND_LEXICAL: _ClassVar[StudentKind]
    STUDENT_KIND_PROBE: _ClassVar[StudentKind]
    STUDENT_KIND_FINETUNE: _ClassVar[StudentKind]
    STUDENT_KIND_MULTI: _ClassVar[StudentKind]
    STUDENT_KIND_ENSEMBLE: _ClassVar[StudentKind]
    STUDENT_KIND_STACK: _ClassVar[StudentKind]

class JobState(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    JOB_STATE_UNSPECIFIED: _ClassVar[JobState]
    JOB_STATE_PENDING: _ClassVar[JobState]
    JOB_STATE_RUNNING: _ClassVar[JobState]
    JOB_STATE_SUCCEEDED: _ClassVar[JobState]
    JOB_STATE_FAILED: _ClassVar[JobState]
    JOB_STATE_CANCELLED: _ClassVar[JobState]
STUDENT_KIND_UNSPECIFIED: StudentKind
STUDENT_KIND_LEXICAL: StudentKind
STUDENT_KIND_PROBE: StudentKind
STUDENT_KIND_FINETUNE: StudentKind
STUDENT_KIND_MULTI: StudentKind
STUDENT_KIND_ENSEMBLE: StudentKind
STUDENT_KIND_STACK: StudentKind
JOB_STATE_UNSPECIFIED: JobState
JOB_STATE_PENDING: JobState
JOB_STATE_RUNNING: JobState
JOB_STATE_SUCCEEDED: JobState
JOB_STATE_FAILED: JobState
JOB_STATE_CANCELLED: JobState

class StartJobRequest(_message.Message):
    __slots__ = ("filter", "student_kind", "labels_path", "promote", "seed", "params", "filters", "labels_paths", "dataset", "datasets")
    class ParamsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    FILTER_FIELD_NUMBER: _ClassVar[int]
    STUDENT_KIND_FIELD_NUMBER: _ClassVar[int]
    LABELS_PATH_FIELD_NUMBER: _ClassVar[int]
    PROMOTE_FIELD_NUMBER: _ClassVar[int]
    SEED_FIELD_NUMBER: _ClassVar[int]
    PARAMS_FIELD_NUMBER: _ClassVar[int]
    FILTERS_FIELD_NUMBER: _ClassVar[int]
    LABELS_PATHS_FIELD_NUMBER: _ClassVar[int]
    DATASET_FIELD_NUMBER: _ClassVar[int]
    DATASETS_FIELD_NUMBER: _ClassVar[int]
    filter: _common_pb2.FilterRef
    student_kind: StudentKind
    labels_path: str
    promote: bool
    seed: int
    params: _containers.ScalarMap[str, str]
    filters: _containers.RepeatedCompositeFieldContainer[_common_pb2.FilterRef]
    labels_paths: _containers.RepeatedScalarFieldContainer[str]
    dataset: DatasetRef
    datasets: _containers.RepeatedCompositeFieldContainer[DatasetRef]
    def __init__(self, filter: _Optional[_Union[_common_pb2.FilterRef, _Mapping]] = ..., student_kind: _Optional[_Union[StudentKind, str]] = ..., labels_path: _Optional[str] = ..., promote: _Optional[bool] = ..., seed: _Optional[int] = ..., params: _Optional[_Mapping[str, str]] = ..., filters: _Optional[_Iterable[_Union[_common_pb2.FilterRef, _Mapping]]] = ..., labels_paths: _Optional[_Iterable[str]] = ..., dataset: _Optional[_Union[DatasetRef, _Mapping]] = ..., datasets: _Optional[_Iterable[_Union[DatasetRef, _Mapping]]] = ...) -> None: ...

class DatasetRef(_message.Message):
    __slots__ = ("label_store", "dataset_version", "data_path")
    LABEL_STORE_FIELD_NUMBER: _ClassVar[int]
    DATASET_VERSION_FIELD_NUMBER: _ClassVar[int]
    DATA_PATH_FIELD_NUMBER: _ClassVar[int]
    label_store: LabelStoreQuery
    dataset_version: str
    data_path: str
    def __init__(self, label_store: _Optional[_Union[LabelStoreQuery, _Mapping]] = ..., dataset_version: _Optional[str] = ..., data_path: _Optional[str] = ...) -> None: ...

class LabelStoreQuery(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class Job(_message.Message):
    __slots__ = ("job_id", "filter", "student_kind", "state", "progress", "message", "model_version", "metrics", "error", "created_at", "updated_at", "filters", "stages", "ray_address")
    class MetricsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: float
        def __init__(self, key: _Optional[str] = ..., value: _Optional[float] = ...) -> None: ...
    JOB_ID_FIELD_NUMBER: _ClassVar[int]
    FILTER_FIELD_NUMBER: _ClassVar[int]
    STUDENT_KIND_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    PROGRESS_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    MODEL_VERSION_FIELD_NUMBER: _ClassVar[int]
    METRICS_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    CREATED_AT_FIELD_NUMBER: _ClassVar[int]
    UPDATED_AT_FIELD_NUMBER: _ClassVar[int]
    FILTERS_FIELD_NUMBER: _ClassVar[int]
    STAGES_FIELD_NUMBER: _ClassVar[int]
    RAY_ADDRESS_FIELD_NUMBER: _ClassVar[int]
    job_id: str
    filter: _common_pb2.FilterRef
    student_kind: StudentKind
    state: JobState
    progress: float
    message: str
    model_version: str
    metrics: _containers.ScalarMap[str, float]
    error: str
    created_at: str
    updated_at: str
    filters: _containers.RepeatedCompositeFieldContainer[_common_pb2.FilterRef]
    stages: _containers.RepeatedCompositeFieldContainer[JobStage]
    ray_address: str
    def __init__(self, job_id: _Optional[str] = ..., filter: _Optional[_Union[_common_pb2.FilterRef, _Mapping]] = ..., student_kind: _Optional[_Union[StudentKind, str]] = ..., state: _Optional[_Union[JobState, str]] = ..., progress: _Optional[float] = ..., message: _Optional[str] = ..., model_version: _Optional[str] = ..., metrics: _Optional[_Mapping[str, float]] = ..., error: _Optional[str] = ..., created_at: _Optional[str] = ..., updated_at: _Optional[str] = ..., filters: _Optional[_Iterable[_Union[_common_pb2.FilterRef, _Mapping]]] = ..., stages: _Optional[_Iterable[_Union[JobStage, _Mapping]]] = ..., ray_address: _Optional[str] = ...) -> None: ...

class JobStage(_message.Message):
    __slots__ = ("name", "done", "total", "parts_by_node", "node_ips")
    class PartsByNodeEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: int
        def __init__(self, key: _Optional[str] = ..., value: _Optional[int] = ...) -> None: ...
    class NodeIpsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    NAME_FIELD_NUMBER: _ClassVar[int]
    DONE_FIELD_NUMBER: _ClassVar[int]
    TOTAL_FIELD_NUMBER: _ClassVar[int]
    PARTS_BY_NODE_FIELD_NUMBER: _ClassVar[int]
    NODE_IPS_FIELD_NUMBER: _ClassVar[int]
    name: str
    done: int
    total: int
    parts_by_node: _containers.ScalarMap[str, int]
    node_ips: _containers.ScalarMap[str, str]
    def __init__(self, name: _Optional[str] = ..., done: _Optional[int] = ..., total: _Optional[int] = ..., parts_by_node: _Optional[_Mapping[str, int]] = ..., node_ips: _Optional[_Mapping[str, str]] = ...) -> None: ...

class GetJobRequest(_message.Message):
    __slots__ = ("job_id",)
    JOB_ID_FIELD_NUMBER: _ClassVar[int]
    job_id: str
    def __init__(self, job_id: _Optional[str] = ...) -> None: ...

class ListJobsRequest(_message.Message):
    __slots__ = ("filter", "limit")
    FILTER_FIELD_NUMBER: _ClassVar[int]
    LIMIT_FIELD_NUMBER: _ClassVar[int]
    filter: _common_pb2.FilterRef
    limit: int
    def __init__(self, filter: _Optional[_Union[_common_pb2.FilterRef, _Mapping]] = ..., limit: _Optional[int] = ...) -> None: ...

class ListJobsResponse(_message.Message):
    __slots__ = ("jobs",)
    JOBS_FIELD_NUMBER: _ClassVar[int]
    jobs: _containers.RepeatedCompositeFieldContainer[Job]
    def __init__(self, jobs: _Optional[_Iterable[_Union[Job, _Mapping]]] = ...) -> None: ...

class ListModelsRequest(_message.Message):
    __slots__ = ("filter",)
    FILTER_FIELD_NUMBER: _ClassVar[int]
    filter: _common_pb2.FilterRef
    def __init__(self, filter: _Optional[_Union[_common_pb2.FilterRef, _Mapping]] = ...) -> None: ...

class ModelVersion(_message.Message):
    __slots__ = ("filter", "version", "student_kind", "created_at", "metrics", "dataset_hash", "promoted", "uri", "multi_model_id")
    class MetricsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: float
        def __init__(self, key: _Optional[str] = ..., value: _Optional[float] = ...) -> None: ...
    FILTER_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    STUDENT_KIND_FIELD_NUMBER: _ClassVar[int]
    CREATED_AT_FIELD_NUMBER: _ClassVar[int]
    METRICS_FIELD_NUMBER: _ClassVar[int]
    DATASET_HASH_FIELD_NUMBER: _ClassVar[int]
    PROMOTED_FIELD_NUMBER: _ClassVar[int]
    URI_FIELD_NUMBER: _ClassVar[int]
    MULTI_MODEL_ID_FIELD_NUMBER: _ClassVar[int]
    filter: _common_pb2.FilterRef
    version: str
    student_kind: StudentKind
    created_at: str
    metrics: _containers.ScalarMap[str, float]
    dataset_hash: str
    promoted: bool
    uri: str
    multi_model_id: str
    def __init__(self, filter: _Optional[_Union[_common_pb2.FilterRef, _Mapping]] = ..., version: _Optional[str] = ..., student_kind: _Optional[_Union[StudentKind, str]] = ..., created_at: _Optional[str] = ..., metrics: _Optional[_Mapping[str, float]] = ..., dataset_hash: _Optional[str] = ..., promoted: _Optional[bool] = ..., uri: _Optional[str] = ..., multi_model_id: _Optional[str] = ...) -> None: ...

class ListModelsResponse(_message.Message):
    __slots__ = ("models",)
    MODELS_FIELD_NUMBER: _ClassVar[int]
    models: _containers.RepeatedCompositeFieldContainer[ModelVersion]
    def __init__(self, models: _Optional[_Iterable[_Union[ModelVersion, _Mapping]]] = ...) -> None: ...

class PromoteRequest(_message.Message):
    __slots__ = ("filter", "version")
    FILTER_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    filter: _common_pb2.FilterRef
    version: str
    def __init__(self, filter: _Optional[_Union[_common_pb2.FilterRef, _Mapping]] = ..., version: _Optional[str] = ...) -> None: ...

class RollbackRequest(_message.Message):
    __slots__ = ("filter",)
    FILTER_FIELD_NUMBER: _ClassVar[int]
    filter: _common_pb2.FilterRef
    def __init__(self, filter: _Optional[_Union[_common_pb2.FilterRef, _Mapping]] = ...) -> None: ...

class GetModelRequest(_message.Message):
    __slots__ = ("filter", "version")
    FILTER_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    filter: _common_pb2.FilterRef
    version: str
    def __init__(self, filter: _Optional[_Union[_common_pb2.FilterRef, _Mapping]] = ..., version: _Optional[str] = ...) -> None: ...
