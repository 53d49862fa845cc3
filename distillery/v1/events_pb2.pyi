from distillery.v1 import article_pb2 as _article_pb2
from distillery.v1 import common_pb2 as _common_pb2
from distillery.v1 import scoring_pb2 as _scoring_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class CandidateArticle(_message.Message):
    __slots__ = ("article", "passed_filters")
    ARTICLE_FIELD_NUMBER: _ClassVar[int]
    PASSED_FILTERS_FIELD_NUMBER: _ClassVar[int]
    article: _article_pb2.Article
    passed_filters: _containers.RepeatedCompositeFieldContainer[_common_pb2.FilterRef]
    def __init__(self, article: _Optional[_Union[_article_pb2.Article, _Mapping]] = ..., passed_filters: _Optional[_Iterable[_Union[_common_pb2.FilterRef, _Mapping]]] = ...) -> None: ...

class ScoredArticle(_message.Message):
    __slots__ = ("article_id", "results")
    ARTICLE_ID_FIELD_NUMBER: _ClassVar[int]
    RESULTS_FIELD_NUMBER: _ClassVar[int]
    article_id: str
    results: _containers.RepeatedCompositeFieldContainer[_scoring_pb2.ScoreResult]
    def __init__(self, article_id: _Optional[str] = ..., results: _Optional[_Iterable[_Union[_scoring_pb2.ScoreResult, _Mapping]]] = ...) -> None: ...

class ModelPromoted(_message.Message):
    __slots__ = ("filter", "version", "previous_version", "uri", "promoted_at")
    FILTER_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    PREVIOUS_VERSION_FIELD_NUMBER: _ClassVar[int]
    URI_FIELD_NUMBER: _ClassVar[int]
    PROMOTED_AT_FIELD_NUMBER: _ClassVar[int]
    filter: _common_pb2.FilterRef
    version: str
    previous_version: str
    uri: str
    promoted_at: str
    def __init__(self, filter: _Optional[_Union[_common_pb2.FilterRef, _Mapping]] = ..., version: _Optional[str] = ..., previous_version: _Optional[str] = ..., uri: _Optional[str] = ..., promoted_at: _Optional[str] = ...) -> None: ...
