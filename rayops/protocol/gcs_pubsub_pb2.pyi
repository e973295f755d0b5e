# ruff: noqa
from . import common_pb2 as _common_pb2
from . import gcs_pg_pb2 as _gcs_pg_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class SubscribeRequest(_message.Message):
    __slots__ = ("channel", "epoch", "after_version", "subscriber_id", "add_keys", "remove_keys")
    CHANNEL_FIELD_NUMBER: _ClassVar[int]
    EPOCH_FIELD_NUMBER: _ClassVar[int]
    AFTER_VERSION_FIELD_NUMBER: _ClassVar[int]
    SUBSCRIBER_ID_FIELD_NUMBER: _ClassVar[int]
    ADD_KEYS_FIELD_NUMBER: _ClassVar[int]
    REMOVE_KEYS_FIELD_NUMBER: _ClassVar[int]
    channel: str
    epoch: str
    after_version: int
    subscriber_id: str
    add_keys: _containers.RepeatedScalarFieldContainer[bytes]
    remove_keys: _containers.RepeatedScalarFieldContainer[bytes]
    def __init__(self, channel: _Optional[str] = ..., epoch: _Optional[str] = ..., after_version: _Optional[int] = ..., subscriber_id: _Optional[str] = ..., add_keys: _Optional[_Iterable[bytes]] = ..., remove_keys: _Optional[_Iterable[bytes]] = ...) -> None: ...

class SubscribeBatch(_message.Message):
    __slots__ = ("channel", "epoch", "version", "is_snapshot", "node_snapshot", "node_events", "actor_events", "not_found_keys", "job_snapshot", "job_events", "kv_snapshot", "kv_events", "pg_snapshot", "pg_events")
    CHANNEL_FIELD_NUMBER: _ClassVar[int]
    EPOCH_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    IS_SNAPSHOT_FIELD_NUMBER: _ClassVar[int]
    NODE_SNAPSHOT_FIELD_NUMBER: _ClassVar[int]
    NODE_EVENTS_FIELD_NUMBER: _ClassVar[int]
    ACTOR_EVENTS_FIELD_NUMBER: _ClassVar[int]
    NOT_FOUND_KEYS_FIELD_NUMBER: _ClassVar[int]
    JOB_SNAPSHOT_FIELD_NUMBER: _ClassVar[int]
    JOB_EVENTS_FIELD_NUMBER: _ClassVar[int]
    KV_SNAPSHOT_FIELD_NUMBER: _ClassVar[int]
    KV_EVENTS_FIELD_NUMBER: _ClassVar[int]
    PG_SNAPSHOT_FIELD_NUMBER: _ClassVar[int]
    PG_EVENTS_FIELD_NUMBER: _ClassVar[int]
    channel: str
    epoch: str
    version: int
    is_snapshot: bool
    node_snapshot: _containers.RepeatedCompositeFieldContainer[_common_pb2.NodeInfo]
    node_events: _containers.RepeatedCompositeFieldContainer[NodeEvent]
    actor_events: _containers.RepeatedCompositeFieldContainer[ActorEvent]
    not_found_keys: _containers.RepeatedScalarFieldContainer[bytes]
    job_snapshot: _containers.RepeatedCompositeFieldContainer[_common_pb2.JobInfo]
    job_events: _containers.RepeatedCompositeFieldContainer[JobEvent]
    kv_snapshot: _containers.RepeatedCompositeFieldContainer[KvKey]
    kv_events: _containers.RepeatedCompositeFieldContainer[KvEvent]
    pg_snapshot: _containers.RepeatedCompositeFieldContainer[_gcs_pg_pb2.PlacementGroupInfo]
    pg_events: _containers.RepeatedCompositeFieldContainer[PlacementGroupEvent]
    def __init__(self, channel: _Optional[str] = ..., epoch: _Optional[str] = ..., version: _Optional[int] = ..., is_snapshot: _Optional[bool] = ..., node_snapshot: _Optional[_Iterable[_Union[_common_pb2.NodeInfo, _Mapping]]] = ..., node_events: _Optional[_Iterable[_Union[NodeEvent, _Mapping]]] = ..., actor_events: _Optional[_Iterable[_Union[ActorEvent, _Mapping]]] = ..., not_found_keys: _Optional[_Iterable[bytes]] = ..., job_snapshot: _Optional[_Iterable[_Union[_common_pb2.JobInfo, _Mapping]]] = ..., job_events: _Optional[_Iterable[_Union[JobEvent, _Mapping]]] = ..., kv_snapshot: _Optional[_Iterable[_Union[KvKey, _Mapping]]] = ..., kv_events: _Optional[_Iterable[_Union[KvEvent, _Mapping]]] = ..., pg_snapshot: _Optional[_Iterable[_Union[_gcs_pg_pb2.PlacementGroupInfo, _Mapping]]] = ..., pg_events: _Optional[_Iterable[_Union[PlacementGroupEvent, _Mapping]]] = ...) -> None: ...

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

class ActorEvent(_message.Message):
    __slots__ = ("version", "change", "actor_id", "state", "address_ip", "address_port", "node_id", "worker_id", "pid", "num_restarts", "max_restarts", "death_cause", "death_error", "name", "ray_namespace", "class_name", "job_id")
    class State(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
        __slots__ = ()
        STATE_UNSPECIFIED: _ClassVar[ActorEvent.State]
        PENDING_CREATION: _ClassVar[ActorEvent.State]
        ALIVE: _ClassVar[ActorEvent.State]
        RESTARTING: _ClassVar[ActorEvent.State]
        DEAD: _ClassVar[ActorEvent.State]
    STATE_UNSPECIFIED: ActorEvent.State
    PENDING_CREATION: ActorEvent.State
    ALIVE: ActorEvent.State
    RESTARTING: ActorEvent.State
    DEAD: ActorEvent.State
    VERSION_FIELD_NUMBER: _ClassVar[int]
    CHANGE_FIELD_NUMBER: _ClassVar[int]
    ACTOR_ID_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    ADDRESS_IP_FIELD_NUMBER: _ClassVar[int]
    ADDRESS_PORT_FIELD_NUMBER: _ClassVar[int]
    NODE_ID_FIELD_NUMBER: _ClassVar[int]
    WORKER_ID_FIELD_NUMBER: _ClassVar[int]
    PID_FIELD_NUMBER: _ClassVar[int]
    NUM_RESTARTS_FIELD_NUMBER: _ClassVar[int]
    MAX_RESTARTS_FIELD_NUMBER: _ClassVar[int]
    DEATH_CAUSE_FIELD_NUMBER: _ClassVar[int]
    DEATH_ERROR_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    RAY_NAMESPACE_FIELD_NUMBER: _ClassVar[int]
    CLASS_NAME_FIELD_NUMBER: _ClassVar[int]
    JOB_ID_FIELD_NUMBER: _ClassVar[int]
    version: int
    change: str
    actor_id: bytes
    state: ActorEvent.State
    address_ip: str
    address_port: int
    node_id: str
    worker_id: bytes
    pid: int
    num_restarts: int
    max_restarts: int
    death_cause: str
    death_error: bytes
    name: str
    ray_namespace: str
    class_name: str
    job_id: int
    def __init__(self, version: _Optional[int] = ..., change: _Optional[str] = ..., actor_id: _Optional[bytes] = ..., state: _Optional[_Union[ActorEvent.State, str]] = ..., address_ip: _Optional[str] = ..., address_port: _Optional[int] = ..., node_id: _Optional[str] = ..., worker_id: _Optional[bytes] = ..., pid: _Optional[int] = ..., num_restarts: _Optional[int] = ..., max_restarts: _Optional[int] = ..., death_cause: _Optional[str] = ..., death_error: _Optional[bytes] = ..., name: _Optional[str] = ..., ray_namespace: _Optional[str] = ..., class_name: _Optional[str] = ..., job_id: _Optional[int] = ...) -> None: ...

class JobEvent(_message.Message):
    __slots__ = ("version", "added", "finished")
    VERSION_FIELD_NUMBER: _ClassVar[int]
    ADDED_FIELD_NUMBER: _ClassVar[int]
    FINISHED_FIELD_NUMBER: _ClassVar[int]
    version: int
    added: _common_pb2.JobInfo
    finished: JobEnd
    def __init__(self, version: _Optional[int] = ..., added: _Optional[_Union[_common_pb2.JobInfo, _Mapping]] = ..., finished: _Optional[_Union[JobEnd, _Mapping]] = ...) -> None: ...

class JobEnd(_message.Message):
    __slots__ = ("job_id", "end_time_ms")
    JOB_ID_FIELD_NUMBER: _ClassVar[int]
    END_TIME_MS_FIELD_NUMBER: _ClassVar[int]
    job_id: int
    end_time_ms: int
    def __init__(self, job_id: _Optional[int] = ..., end_time_ms: _Optional[int] = ...) -> None: ...

class KvKey(_message.Message):
    __slots__ = ("namespace", "key", "value_size")
    NAMESPACE_FIELD_NUMBER: _ClassVar[int]
    KEY_FIELD_NUMBER: _ClassVar[int]
    VALUE_SIZE_FIELD_NUMBER: _ClassVar[int]
    namespace: str
    key: bytes
    value_size: int
    def __init__(self, namespace: _Optional[str] = ..., key: _Optional[bytes] = ..., value_size: _Optional[int] = ...) -> None: ...

class KvEvent(_message.Message):
    __slots__ = ("version", "namespace", "key", "put", "delete")
    VERSION_FIELD_NUMBER: _ClassVar[int]
    NAMESPACE_FIELD_NUMBER: _ClassVar[int]
    KEY_FIELD_NUMBER: _ClassVar[int]
    PUT_FIELD_NUMBER: _ClassVar[int]
    DELETE_FIELD_NUMBER: _ClassVar[int]
    version: int
    namespace: str
    key: bytes
    put: KvPut
    delete: KvDelete
    def __init__(self, version: _Optional[int] = ..., namespace: _Optional[str] = ..., key: _Optional[bytes] = ..., put: _Optional[_Union[KvPut, _Mapping]] = ..., delete: _Optional[_Union[KvDelete, _Mapping]] = ...) -> None: ...

class KvPut(_message.Message):
    __slots__ = ("value_size", "created")
    VALUE_SIZE_FIELD_NUMBER: _ClassVar[int]
    CREATED_FIELD_NUMBER: _ClassVar[int]
    value_size: int
    created: bool
    def __init__(self, value_size: _Optional[int] = ..., created: _Optional[bool] = ...) -> None: ...

class KvDelete(_message.Message):
    __slots__ = ("by_prefix", "count")
    BY_PREFIX_FIELD_NUMBER: _ClassVar[int]
    COUNT_FIELD_NUMBER: _ClassVar[int]
    by_prefix: bool
    count: int
    def __init__(self, by_prefix: _Optional[bool] = ..., count: _Optional[int] = ...) -> None: ...

class PlacementGroupEvent(_message.Message):
    __slots__ = ("version", "added", "state_changed", "forgotten_id")
    VERSION_FIELD_NUMBER: _ClassVar[int]
    ADDED_FIELD_NUMBER: _ClassVar[int]
    STATE_CHANGED_FIELD_NUMBER: _ClassVar[int]
    FORGOTTEN_ID_FIELD_NUMBER: _ClassVar[int]
    version: int
    added: _gcs_pg_pb2.PlacementGroupInfo
    state_changed: PlacementGroupStateChange
    forgotten_id: bytes
    def __init__(self, version: _Optional[int] = ..., added: _Optional[_Union[_gcs_pg_pb2.PlacementGroupInfo, _Mapping]] = ..., state_changed: _Optional[_Union[PlacementGroupStateChange, _Mapping]] = ..., forgotten_id: _Optional[bytes] = ...) -> None: ...

class PlacementGroupStateChange(_message.Message):
    __slots__ = ("placement_group_id", "state", "bundle_nodes")
    class BundleNodesEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: int
        value: str
        def __init__(self, key: _Optional[int] = ..., value: _Optional[str] = ...) -> None: ...
    PLACEMENT_GROUP_ID_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    BUNDLE_NODES_FIELD_NUMBER: _ClassVar[int]
    placement_group_id: bytes
    state: str
    bundle_nodes: _containers.ScalarMap[int, str]
    def __init__(self, placement_group_id: _Optional[bytes] = ..., state: _Optional[str] = ..., bundle_nodes: _Optional[_Mapping[int, str]] = ...) -> None: ...
