# ruff: noqa
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class AddJobPackageReferencesRequest(_message.Message):
    __slots__ = ("job_id", "uris")
    JOB_ID_FIELD_NUMBER: _ClassVar[int]
    URIS_FIELD_NUMBER: _ClassVar[int]
    job_id: int
    uris: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, job_id: _Optional[int] = ..., uris: _Optional[_Iterable[str]] = ...) -> None: ...

class AddJobPackageReferencesReply(_message.Message):
    __slots__ = ("job_running",)
    JOB_RUNNING_FIELD_NUMBER: _ClassVar[int]
    job_running: bool
    def __init__(self, job_running: _Optional[bool] = ...) -> None: ...

class GetPackageReferencesRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class PackageReferences(_message.Message):
    __slots__ = ("uri", "holders")
    URI_FIELD_NUMBER: _ClassVar[int]
    HOLDERS_FIELD_NUMBER: _ClassVar[int]
    uri: str
    holders: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, uri: _Optional[str] = ..., holders: _Optional[_Iterable[str]] = ...) -> None: ...

class GetPackageReferencesReply(_message.Message):
    __slots__ = ("packages", "deleted_total")
    PACKAGES_FIELD_NUMBER: _ClassVar[int]
    DELETED_TOTAL_FIELD_NUMBER: _ClassVar[int]
    packages: _containers.RepeatedCompositeFieldContainer[PackageReferences]
    deleted_total: int
    def __init__(self, packages: _Optional[_Iterable[_Union[PackageReferences, _Mapping]]] = ..., deleted_total: _Optional[int] = ...) -> None: ...
