# ruff: noqa
from . import common_pb2 as _common_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class GetNextJobIdRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class GetNextJobIdReply(_message.Message):
    __slots__ = ("job_id", "job_id_hex")
    JOB_ID_FIELD_NUMBER: _ClassVar[int]
    JOB_ID_HEX_FIELD_NUMBER: _ClassVar[int]
    job_id: int
    job_id_hex: str
    def __init__(self, job_id: _Optional[int] = ..., job_id_hex: _Optional[str] = ...) -> None: ...

class AddJobRequest(_message.Message):
    __slots__ = ("job_id", "driver_pid", "driver_ip", "namespace", "entrypoint", "start_time_ms")
    JOB_ID_FIELD_NUMBER: _ClassVar[int]
    DRIVER_PID_FIELD_NUMBER: _ClassVar[int]
    DRIVER_IP_FIELD_NUMBER: _ClassVar[int]
    NAMESPACE_FIELD_NUMBER: _ClassVar[int]
    ENTRYPOINT_FIELD_NUMBER: _ClassVar[int]
    START_TIME_MS_FIELD_NUMBER: _ClassVar[int]
    job_id: int
    driver_pid: int
    driver_ip: str
    namespace: str
    entrypoint: str
    start_time_ms: int
    def __init__(self, job_id: _Optional[int] = ..., driver_pid: _Optional[int] = ..., driver_ip: _Optional[str] = ..., namespace: _Optional[str] = ..., entrypoint: _Optional[str] = ..., start_time_ms: _Optional[int] = ...) -> None: ...

class AddJobReply(_message.Message):
    __slots__ = ("job_info",)
    JOB_INFO_FIELD_NUMBER: _ClassVar[int]
    job_info: _common_pb2.JobInfo
    def __init__(self, job_info: _Optional[_Union[_common_pb2.JobInfo, _Mapping]] = ...) -> None: ...

class MarkJobFinishedRequest(_message.Message):
    __slots__ = ("job_id",)
    JOB_ID_FIELD_NUMBER: _ClassVar[int]
    job_id: int
    def __init__(self, job_id: _Optional[int] = ...) -> None: ...

class MarkJobFinishedReply(_message.Message):
    __slots__ = ("found",)
    FOUND_FIELD_NUMBER: _ClassVar[int]
    found: bool
    def __init__(self, found: _Optional[bool] = ...) -> None: ...

class GetAllJobInfoRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class GetAllJobInfoReply(_message.Message):
    __slots__ = ("job_info_list",)
    JOB_INFO_LIST_FIELD_NUMBER: _ClassVar[int]
    job_info_list: _containers.RepeatedCompositeFieldContainer[_common_pb2.JobInfo]
    def __init__(self, job_info_list: _Optional[_Iterable[_Union[_common_pb2.JobInfo, _Mapping]]] = ...) -> None: ...
