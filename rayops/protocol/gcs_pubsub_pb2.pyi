# ruff: noqa
from . import common_pb2 as _common_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class SubscribeRequest(_message.Message):
    __slots__ = ("channel", "epoch", "after_version", "subscriber_id")
    CHANNEL_FIELD_NUMBER: _ClassVar[int]
    EPOCH_FIELD_NUMBER: _ClassVar[int]
    AFTER_VERSION_FIELD_NUMBER: _ClassVar[int]
    SUBSCRIBER_ID_FIELD_NUMBER: _ClassVar[int]
    channel: str
    epoch: str
    after_version: int
    subscriber_id: str
    def __init__(self, channel: _Optional[str] = ..., epoch: _Optional[str] = ..., after_version: _Optional[int] = ..., subscriber_id: _Optional[str] = ...) -> None: ...

class SubscribeBatch(_message.Message):
    __slots__ = ("channel", "epoch", "version", "is_snapshot", "node_snapshot", "node_events")
    CHANNEL_FIELD_NUMBER: _ClassVar[int]
    EPOCH_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    IS_SNAPSHOT_FIELD_NUMBER: _ClassVar[int]
    NODE_SNAPSHOT_FIELD_NUMBER: _ClassVar[int]
    NODE_EVENTS_FIELD_NUMBER: _ClassVar[int]
    channel: str
    epoch: str
    version: int
    is_snapshot: bool
    node_snapshot: _containers.RepeatedCompositeFieldContainer[_common_pb2.NodeInfo]
    node_events: _containers.RepeatedCompositeFieldContainer[NodeEvent]
    def __init__(self, channel: _Optional[str] = ..., epoch: _Optional[str] = ..., version: _Optional[int] = ..., is_snapshot: _Optional[bool] = ..., node_snapshot: _Optional[_Iterable[_Union[_common_pb2.NodeInfo, _Mapping]]] = ..., node_events: _Optional[_Iterable[_Union[NodeEvent, _Mapping]]] = ...) -> None: ...

class NodeEvent(_message.Message):
    __slots__ = ("version", "added", "usage", "dead", "removed_node_id")
    VERSION_FIELD_NUMBER: _ClassVar[int]
    ADDED_FIELD_NUMBER: _ClassVar[int]
    USAGE_FIELD_NUMBER: _ClassVar[int]
    DEAD_FIELD_NUMBER: _ClassVar[int]
    REMOVED_NODE_ID_FIELD_NUMBER: _ClassVar[int]
    version: int
    added: _common_pb2.NodeInfo
    usage: NodeUsage
    dead: NodeDeath
    removed_node_id: str
    def __init__(self, version: _Optional[int] = ..., added: _Optional[_Union[_common_pb2.NodeInfo, _Mapping]] = ..., usage: _Optional[_Union[NodeUsage, _Mapping]] = ..., dead: _Optional[_Union[NodeDeath, _Mapping]] = ..., removed_node_id: _Optional[str] = ...) -> None: ...

class NodeUsage(_message.Message):
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

class NodeDeath(_message.Message):
    __slots__ = ("node_id", "death_reason", "end_time_ms")
    NODE_ID_FIELD_NUMBER: _ClassVar[int]
    DEATH_REASON_FIELD_NUMBER: _ClassVar[int]
    END_TIME_MS_FIELD_NUMBER: _ClassVar[int]
    node_id: str
    death_reason: str
    end_time_ms: int
    def __init__(self, node_id: _Optional[str] = ..., death_reason: _Optional[str] = ..., end_time_ms: _Optional[int] = ...) -> None: ...
