from distillery.v1 import article_pb2 as _article_pb2
from distillery.v1 import common_pb2 as _common_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class Stage(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    STAGE_UNSPECIFIED: _ClassVar[Stage]
    STAGE_SINGLE: _ClassVar[Stage]
    STAGE_CHEAP: _ClassVar[Stage]
    STAGE_EXPENSIVE: _ClassVar[Stage]
STAGE_UNSPECIFIED: Stage
STAGE_SINGLE: Stage
STAGE_CHEAP: Stage
STAGE_EXPENSIVE: Stage

class DimensionScore(_message.Message):
    __slots__ = ("name", "raw", "calibrated", "lower", "upper", "spread")
    NAME_FIELD_NUMBER: _ClassVar[int]
    RAW_FIELD_NUMBER: _ClassVar[int]
    CALIBRATED_FIELD_NUMBER: _ClassVar[int]
    LOWER_FIELD_NUMBER: _ClassVar[int]
    UPPER_FIELD_NUMBER: _ClassVar[int]
    SPREAD_FIELD_NUMBER: _ClassVar[int]
    name: str
    raw: float
    calibrated: float
    lower: float
    upper: float
    spread: float
    def __init__(self, name: _Optional[str] = ..., raw: _Optional[float] = ..., calibrated: _Optional[float] = ..., lower: _Optional[float] = ..., upper: _Optional[float] = ..., spread: _Optional[float] = ...) -> None: ...

class Timings(_message.Message):
    __slots__ = ("queue_seconds", "preprocess_seconds", "inference_seconds", "total_seconds")
    QUEUE_SECONDS_FIELD_NUMBER: _ClassVar[int]
    PREPROCESS_SECONDS_FIELD_NUMBER: _ClassVar[int]
    INFERENCE_SECONDS_FIELD_NUMBER: _ClassVar[int]
    TOTAL_SECONDS_FIELD_NUMBER: _ClassVar[int]
    queue_seconds: float
    preprocess_seconds: float
    inference_seconds: float
    total_seconds: float
    def __init__(self, queue_seconds: _Optional[float] = ..., preprocess_seconds: _Optional[float] = ..., inference_seconds: _Optional[float] = ..., total_seconds: _Optional[float] = ...) -> None: ...

class ScoreResult(_message.Message):
    __slots__ = ("article_id", "filter", "dimensions", "overall", "tier", "uncertain", "model_version", "stage", "timings", "gatekeepers_applied")
    ARTICLE_ID_FIELD_NUMBER: _ClassVar[int]
    FILTER_FIELD_NUMBER: _ClassVar[int]
    DIMENSIONS_FIELD_NUMBER: _ClassVar[int]
    OVERALL_FIELD_NUMBER: _ClassVar[int]
    TIER_FIELD_NUMBER: _ClassVar[int]
    UNCERTAIN_FIELD_NUMBER: _ClassVar[int]
    MODEL_VERSION_FIELD_NUMBER: _ClassVar[int]
    STAGE_FIELD_NUMBER: _ClassVar[int]
    TIMINGS_FIELD_NUMBER: _ClassVar[int]
    GATEKEEPERS_APPLIED_FIELD_NUMBER: _ClassVar[int]
    article_id: str
    filter: _common_pb2.FilterRef
    dimensions: _containers.RepeatedCompositeFieldContainer[DimensionScore]
    overall: float
    tier: str
    uncertain: bool
    model_version: str
    stage: Stage
    timings: Timings
    gatekeepers_applied: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, article_id: _Optional[str] = ..., filter: _Optional[_Union[_common_pb2.FilterRef, _Mapping]] = ..., dimensions: _Optional[_Iterable[_Union[DimensionScore, _Mapping]]] = ..., overall: _Optional[float] = ..., tier: _Optional[str] = ..., uncertain: _Optional[bool] = ..., model_version: _Optional[str] = ..., stage: _Optional[_Union[Stage, str]] = ..., timings: _Optional[_Union[Timings, _Mapping]] = ..., gatekeepers_applied: _Optional[_Iterable[str]] = ...) -> None: ...

class ScoreRequest(_message.Message):
    __slots__ = ("article", "filters")
    ARTICLE_FIELD_NUMBER: _ClassVar[int]
    FILTERS_FIELD_NUMBER: _ClassVar[int]
    article: _article_pb2.Article
    filters: _containers.RepeatedCompositeFieldContainer[_common_pb2.FilterRef]
    def __init__(self, article: _Optional[_Union[_article_pb2.Article, _Mapping]] = ..., filters: _Optional[_Iterable[_Union[_common_pb2.FilterRef, _Mapping]]] = ...) -> None: ...

class ScoreResponse(_message.Message):
    __slots__ = ("article_id", "results")
    ARTICLE_ID_FIELD_NUMBER: _ClassVar[int]
    RESULTS_FIELD_NUMBER: _ClassVar[int]
    article_id: str
    results: _containers.RepeatedCompositeFieldContainer[ScoreResult]
    def __init__(self, article_id: _Optional[str] = ..., results: _Optional[_Iterable[_Union[ScoreResult, _Mapping]]] = ...) -> None: ...

class ScoreBatchRequest(_message.Message):
    __slots__ = ("articles", "filters")
    ARTICLES_FIELD_NUMBER: _ClassVar[int]
    FILTERS_FIELD_NUMBER: _ClassVar[int]
    articles: _containers.RepeatedCompositeFieldContainer[_article_pb2.Article]
    filters: _containers.RepeatedCompositeFieldContainer[_common_pb2.FilterRef]
    def __init__(self, articles: _Optional[_Iterable[_Union[_article_pb2.Article, _Mapping]]] = ..., filters: _Optional[_Iterable[_Union[_common_pb2.FilterRef, _Mapping]]] = ...) -> None: ...

class ScoreBatchResponse(_message.Message):
    __slots__ = ("responses",)
    RESPONSES_FIELD_NUMBER: _ClassVar[int]
    responses: _containers.RepeatedCompositeFieldContainer[ScoreResponse]
    def __init__(self, responses: _Optional[_Iterable[_Union[ScoreResponse, _Mapping]]] = ...) -> None: ...

class ScoreStreamResponse(_message.Message):
    __slots__ = ("response", "error")
    RESPONSE_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    response: ScoreResponse
    error: _common_pb2.ItemError
    def __init__(self, response: _Optional[_Union[ScoreResponse, _Mapping]] = ..., error: _Optional[_Union[_common_pb2.ItemError, _Mapping]] = ...) -> None: ...
