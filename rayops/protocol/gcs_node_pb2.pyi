# ruff: noqa
from . import common_pb2 as _common_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class RegisterNodeRequest(_message.Message):
    __slots__ = ("node_info",)
    NODE_INFO_FIELD_NUMBER: _ClassVar[int]
    node_info: _common_pb2.NodeInfo
    def __init__(self, node_info: _Optional[_Union[_common_pb2.NodeInfo, _Mapping]] = ...) -> None: ...

class RegisterNodeReply(_message.Message):
    __slots__ = ("node_info",)
    NODE_INFO_FIELD_NUMBER: _ClassVar[int]
    node_info: _common_pb2.NodeInfo
    def __init__(self, node_info: _Optional[_Union[_common_pb2.NodeInfo, _Mapping]] = ...) -> None: ...

class UnregisterNodeRequest(_message.Message):
    __slots__ = ("node_id", "reason")
    NODE_ID_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    node_id: str
    reason: str
    def __init__(self, node_id: _Optional[str] = ..., reason: _Optional[str] = ...) -> None: ...

class UnregisterNodeReply(_message.Message):
    __slots__ = ("found",)
    FOUND_FIELD_NUMBER: _ClassVar[int]
    found: bool
    def __init__(self, found: _Optional[bool] = ...) -> None: ...

class GetAllNodeInfoRequest(_message.Message):
    __slots__ = ("alive_only",)
    ALIVE_ONLY_FIELD_NUMBER: _ClassVar[int]
    alive_only: bool
    def __init__(self, alive_only: _Optional[bool] = ...) -> None: ...

class GetAllNodeInfoReply(_message.Message):
    __slots__ = ("node_info_list",)
    NODE_INFO_LIST_FIELD_NUMBER: _ClassVar[int]
    node_info_list: _containers.RepeatedCompositeFieldContainer[_common_pb2.NodeInfo]
    def __init__(self, node_info_list: _Optional[_Iterable[_Union[_common_pb2.NodeInfo, _Mapping]]] = ...) -> None: ...

class ReportResourceUsageRequest(_message.Message):
    __slots__ = ("node_id", "resources_total", "resources_available", "object_store_stats", "pending_demand")
    class ResourcesTotalEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: float
        def __init__(self, key: _Optional[str] = ..., value: _Optional[float] = ...) -> None: ...
    class ResourcesAvailableEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: float
        def __init__(self, key: _Optional[str] = ..., value: _Optional[float] = ...) -> None: ...
    NODE_ID_FIELD_NUMBER: _ClassVar[int]
    RESOURCES_TOTAL_FIELD_NUMBER: _ClassVar[int]
    RESOURCES_AVAILABLE_FIELD_NUMBER: _ClassVar[int]
    OBJECT_STORE_STATS_FIELD_NUMBER: _ClassVar[int]
    PENDING_DEMAND_FIELD_NUMBER: _ClassVar[int]
    node_id: str
    resources_total: _containers.ScalarMap[str, float]
    resources_available: _containers.ScalarMap[str, float]
    object_store_stats: _common_pb2.ObjectStoreStats
    pending_demand: _containers.RepeatedCompositeFieldContainer[_common_pb2.ResourceDemand]
    def __init__(self, node_id: _Optional[str] = ..., resources_total: _Optional[_Mapping[str, float]] = ..., resources_available: _Optional[_Mapping[str, float]] = ..., object_store_stats: _Optional[_Union[_common_pb2.ObjectStoreStats, _Mapping]] = ..., pending_demand: _Optional[_Iterable[_Union[_common_pb2.ResourceDemand, _Mapping]]] = ...) -> None: ...

class ReportResourceUsageReply(_message.Message):
    __slots__ = ("accepted", "node_state")
    ACCEPTED_FIELD_NUMBER: _ClassVar[int]
    NODE_STATE_FIELD_NUMBER: _ClassVar[int]
    accepted: bool
    node_state: _common_pb2.NodeInfo.NodeState
    def __init__(self, accepted: _Optional[bool] = ..., node_state: _Optional[_Union[_common_pb2.NodeInfo.NodeState, str]] = ...) -> None: ...

class CheckAliveRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class CheckAliveReply(_message.Message):
    __slots__ = ("rayops_version", "cluster_id", "start_time_ms")
    RAYOPS_VERSION_FIELD_NUMBER: _ClassVar[int]
    CLUSTER_ID_FIELD_NUMBER: _ClassVar[int]
    START_TIME_MS_FIELD_NUMBER: _ClassVar[int]
    rayops_version: str
    cluster_id: str
    start_time_ms: int
    def __init__(self, rayops_version: _Optional[str] = ..., cluster_id: _Optional[str] = ..., start_time_ms: _Optional[int] = ...) -> None: ...
