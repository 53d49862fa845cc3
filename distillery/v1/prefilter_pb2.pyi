from distillery.v1 import article_pb2 as _article_pb2
from distillery.v1 import common_pb2 as _common_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class Reason(_message.Message):
    __slots__ = ("code", "matched")
    CODE_FIELD_NUMBER: _ClassVar[int]
    MATCHED_FIELD_NUMBER: _ClassVar[int]
    code: str
    matched: str
    def __init__(self, code: _Optional[str] = ..., matched: _Optional[str] = ...) -> None: ...

class Decision(_message.Message):
    __slots__ = ("article_id", "filter", "passed", "reasons")
    ARTICLE_ID_FIELD_NUMBER: _ClassVar[int]
    FILTER_FIELD_NUMBER: _ClassVar[int]
    PASSED_FIELD_NUMBER: _ClassVar[int]
    REASONS_FIELD_NUMBER: _ClassVar[int]
    article_id: str
    filter: _common_pb2.FilterRef
    passed: bool
    reasons: _containers.RepeatedCompositeFieldContainer[Reason]
    def __init__(self, article_id: _Optional[str] = ..., filter: _Optional[_Union[_common_pb2.FilterRef, _Mapping]] = ..., passed: _Optional[bool] = ..., reasons: _Optional[_Iterable[_Union[Reason, _Mapping]]] = ...) -> None: ...

class CheckRequest(_message.Message):
    __slots__ = ("articles", "filters")
    ARTICLES_FIELD_NUMBER: _ClassVar[int]
    FILTERS_FIELD_NUMBER: _ClassVar[int]
    articles: _containers.RepeatedCompositeFieldContainer[_article_pb2.Article]
    filters: _containers.RepeatedCompositeFieldContainer[_common_pb2.FilterRef]
    def __init__(self, articles: _Optional[_Iterable[_Union[_article_pb2.Article, _Mapping]]] = ..., filters: _Optional[_Iterable[_Union[_common_pb2.FilterRef, _Mapping]]] = ...) -> None: ...

class CheckResponse(_message.Message):
    __slots__ = ("decisions",)
    DECISIONS_FIELD_NUMBER: _ClassVar[int]
    decisions: _containers.RepeatedCompositeFieldContainer[Decision]
    def __init__(self, decisions: _Optional[_Iterable[_Union[Decision, _Mapping]]] = ...) -> None: ...

class CheckStreamRequest(_message.Message):
    __slots__ = ("article", "filters")
    ARTICLE_FIELD_NUMBER: _ClassVar[int]
    FILTERS_FIELD_NUMBER: _ClassVar[int]
    article: _article_pb2.Article
    filters: _containers.RepeatedCompositeFieldContainer[_common_pb2.FilterRef]
    def __init__(self, article: _Optional[_Union[_article_pb2.Article, _Mapping]] = ..., filters: _Optional[_Iterable[_Union[_common_pb2.FilterRef, _Mapping]]] = ...) -> None: ...

class CheckStreamResponse(_message.Message):
    __slots__ = ("article_id", "decisions", "error")
    ARTICLE_ID_FIELD_NUMBER: _ClassVar[int]
    DECISIONS_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    article_id: str
    decisions: _containers.RepeatedCompositeFieldContainer[Decision]
    error: _common_pb2.ItemError
    def __init__(self, article_id: _Optional[str] = ..., decisions: _Optional[_Iterable[_Union[Decision, _Mapping]]] = ..., error: _Optional[_Union[_common_pb2.ItemError, _Mapping]] = ...) -> None: ...
