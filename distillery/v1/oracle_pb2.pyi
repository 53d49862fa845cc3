from distillery.v1 import article_pb2 as _article_pb2
from distillery.v1 import common_pb2 as _common_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class LabelReason(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    LABEL_REASON_UNSPECIFIED: _ClassVar[LabelReason]
    LABEL_REASON_TRAINING: _ClassVar[LabelReason]
    LABEL_REASON_UNCERTAIN: _ClassVar[LabelReason]
    LABEL_REASON_AUDIT: _ClassVar[LabelReason]
    LABEL_REASON_SYNTHETIC: _ClassVar[LabelReason]
LABEL_REASON_UNSPECIFIED: LabelReason
LABEL_REASON_TRAINING: LabelReason
LABEL_REASON_UNCERTAIN: LabelReason
LABEL_REASON_AUDIT: LabelReason
LABEL_REASON_SYNTHETIC: LabelReason

class LabelRequest(_message.Message):
    __slots__ = ("article", "filter", "reason", "oracle", "job_id")
    ARTICLE_FIELD_NUMBER: _ClassVar[int]
    FILTER_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    ORACLE_FIELD_NUMBER: _ClassVar[int]
    JOB_ID_FIELD_NUMBER: _ClassVar[int]
    article: _article_pb2.Article
    filter: _common_pb2.FilterRef
    reason: LabelReason
    oracle: str
    job_id: str
    def __init__(self, article: _Optional[_Union[_article_pb2.Article, _Mapping]] = ..., filter: _Optional[_Union[_common_pb2.FilterRef, _Mapping]] = ..., reason: _Optional[_Union[LabelReason, str]] = ..., oracle: _Optional[str] = ..., job_id: _Optional[str] = ...) -> None: ...

class DimensionLabel(_message.Message):
    __slots__ = ("name", "score", "evidence")
    NAME_FIELD_NUMBER: _ClassVar[int]
    SCORE_FIELD_NUMBER: _ClassVar[int]
    EVIDENCE_FIELD_NUMBER: _ClassVar[int]
    name: str
    score: float
    evidence: str
    def __init__(self, name: _Optional[str] = ..., score: _Optional[float] = ..., evidence: _Optional[str] = ...) -> None: ...

class OracleLabel(_message.Message):
    __slots__ = ("article_id", "filter", "prompt_hash", "oracle_model", "provider", "dimensions", "usage", "cached", "temperature", "latency_seconds", "created_at", "reason")
    ARTICLE_ID_FIELD_NUMBER: _ClassVar[int]
    FILTER_FIELD_NUMBER: _ClassVar[int]
    PROMPT_HASH_FIELD_NUMBER: _ClassVar[int]
    ORACLE_MODEL_FIELD_NUMBER: _ClassVar[int]
    PROVIDER_FIELD_NUMBER: _ClassVar[int]
    DIMENSIONS_FIELD_NUMBER: _ClassVar[int]
    USAGE_FIELD_NUMBER: _ClassVar[int]
    CACHED_FIELD_NUMBER: _ClassVar[int]
    TEMPERATURE_FIELD_NUMBER: _ClassVar[int]
    LATENCY_SECONDS_FIELD_NUMBER: _ClassVar[int]
    CREATED_AT_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    article_id: str
    filter: _common_pb2.FilterRef
    prompt_hash: str
    oracle_model: str
    provider: str
    dimensions: _containers.RepeatedCompositeFieldContainer[DimensionLabel]
    usage: _common_pb2.Usage
    cached: bool
    temperature: float
    latency_seconds: float
    created_at: str
    reason: LabelReason
    def __init__(self, article_id: _Optional[str] = ..., filter: _Optional[_Union[_common_pb2.FilterRef, _Mapping]] = ..., prompt_hash: _Optional[str] = ..., oracle_model: _Optional[str] = ..., provider: _Optional[str] = ..., dimensions: _Optional[_Iterable[_Union[DimensionLabel, _Mapping]]] = ..., usage: _Optional[_Union[_common_pb2.Usage, _Mapping]] = ..., cached: _Optional[bool] = ..., temperature: _Optional[float] = ..., latency_seconds: _Optional[float] = ..., created_at: _Optional[str] = ..., reason: _Optional[_Union[LabelReason, str]] = ...) -> None: ...

class LabelResponse(_message.Message):
    __slots__ = ("label",)
    LABEL_FIELD_NUMBER: _ClassVar[int]
    label: OracleLabel
    def __init__(self, label: _Optional[_Union[OracleLabel, _Mapping]] = ...) -> None: ...

class LabelStreamResponse(_message.Message):
    __slots__ = ("article_id", "label", "error")
    ARTICLE_ID_FIELD_NUMBER: _ClassVar[int]
    LABEL_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    article_id: str
    label: OracleLabel
    error: _common_pb2.ItemError
    def __init__(self, article_id: _Optional[str] = ..., label: _Optional[_Union[OracleLabel, _Mapping]] = ..., error: _Optional[_Union[_common_pb2.ItemError, _Mapping]] = ...) -> None: ...

class GetBudgetsRequest(_message.Message):
    __slots__ = ("filter",)
    FILTER_FIELD_NUMBER: _ClassVar[int]
    filter: str
    def __init__(self, filter: _Optional[str] = ...) -> None: ...

class Budget(_message.Message):
    __slots__ = ("scope", "name", "limit_usd", "spent_usd", "remaining_usd")
    SCOPE_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    LIMIT_USD_FIELD_NUMBER: _ClassVar[int]
    SPENT_USD_FIELD_NUMBER: _ClassVar[int]
    REMAINING_USD_FIELD_NUMBER: _ClassVar[int]
    scope: str
    name: str
    limit_usd: float
    spent_usd: float
    remaining_usd: float
    def __init__(self, scope: _Optional[str] = ..., name: _Optional[str] = ..., limit_usd: _Optional[float] = ..., spent_usd: _Optional[float] = ..., remaining_usd: _Optional[float] = ...) -> None: ...

class GetBudgetsResponse(_message.Message):
    __slots__ = ("budgets",)
    BUDGETS_FIELD_NUMBER: _ClassVar[int]
    budgets: _containers.RepeatedCompositeFieldContainer[Budget]
    def __init__(self, budgets: _Optional[_Iterable[_Union[Budget, _Mapping]]] = ...) -> None: ...

class SetBudgetRequest(_message.Message):
    __slots__ = ("scope", "name", "limit_usd")
    SCOPE_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    LIMIT_USD_FIELD_NUMBER: _ClassVar[int]
    scope: str
    name: str
    limit_usd: float
    def __init__(self, scope: _Optional[str] = ..., name: _Optional[str] = ..., limit_usd: _Optional[float] = ...) -> None: ...
