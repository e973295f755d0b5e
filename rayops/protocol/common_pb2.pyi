# ruff: noqa
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class ObjectStoreStats(_message.Message):
    __slots__ = ("used_bytes", "capacity_bytes", "spilled_bytes")
    USED_BYTES_FIELD_NUMBER: _ClassVar[int]
    CAPACITY_BYTES_FIELD_NUMBER: _ClassVar[int]
    SPILLED_BYTES_FIELD_NUMBER: _ClassVar[int]
    used_bytes: int
    capacity_bytes: int
    spilled_bytes: int
    def __init__(self, used_bytes: _Optional[int] = ..., capacity_bytes: _Optional[int] = ..., spilled_bytes: _Optional[int] = ...) -> None: ...

class NodeInfo(_message.Message):
    __slots__ = ("node_id", "node_ip", "node_name", "raylet_port", "object_store_dir", "session_dir", "resources_total", "resources_available", "labels", "state", "death_reason", "start_time_ms", "end_time_ms", "is_head_node", "rayops_version", "object_store_stats", "last_report_time_ms", "pending_demand", "metrics_export_port", "agent_port")
    class NodeState(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
        __slots__ = ()
        NODE_STATE_UNSPECIFIED: _ClassVar[NodeInfo.NodeState]
        ALIVE: _ClassVar[NodeInfo.NodeState]
        DEAD: _ClassVar[NodeInfo.NodeState]
    NODE_STATE_UNSPECIFIED: NodeInfo.NodeState
    ALIVE: NodeInfo.NodeState
    DEAD: NodeInfo.NodeState
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
    class LabelsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    NODE_ID_FIELD_NUMBER: _ClassVar[int]
    NODE_IP_FIELD_NUMBER: _ClassVar[int]
    NODE_NAME_FIELD_NUMBER: _ClassVar[int]
    RAYLET_PORT_FIELD_NUMBER: _ClassVar[int]
    OBJECT_STORE_DIR_FIELD_NUMBER: _ClassVar[int]
    SESSION_DIR_FIELD_NUMBER: _ClassVar[int]
    RESOURCES_TOTAL_FIELD_NUMBER: _ClassVar[int]
    RESOURCES_AVAILABLE_FIELD_NUMBER: _ClassVar[int]
    LABELS_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    DEATH_REASON_FIELD_NUMBER: _ClassVar[int]
    START_TIME_MS_FIELD_NUMBER: _ClassVar[int]
    END_TIME_MS_FIELD_NUMBER: _ClassVar[int]
    IS_HEAD_NODE_FIELD_NUMBER: _ClassVar[int]
    RAYOPS_VERSION_FIELD_NUMBER: _ClassVar[int]
    OBJECT_STORE_STATS_FIELD_NUMBER: _ClassVar[int]
    LAST_REPORT_TIME_MS_FIELD_NUMBER: _ClassVar[int]
    PENDING_DEMAND_FIELD_NUMBER: _ClassVar[int]
    METRICS_EXPORT_PORT_FIELD_NUMBER: _ClassVar[int]
    AGENT_PORT_FIELD_NUMBER: _ClassVar[int]
    node_id: str
    node_ip: str
    node_name: str
    raylet_port: int
    object_store_dir: str
    session_dir: str
    resources_total: _containers.ScalarMap[str, float]
    resources_available: _containers.ScalarMap[str, float]
    labels: _containers.ScalarMap[str, str]
    state: NodeInfo.NodeState
    death_reason: str
    start_time_ms: int
    end_time_ms: int
    is_head_node: bool
    rayops_version: str
    object_store_stats: ObjectStoreStats
    last_report_time_ms: int
    pending_demand: _containers.RepeatedCompositeFieldContainer[ResourceDemand]
    metrics_export_port: int
    agent_port: int
    def __init__(self, node_id: _Optional[str] = ..., node_ip: _Optional[str] = ..., node_name: _Optional[str] = ..., raylet_port: _Optional[int] = ..., object_store_dir: _Optional[str] = ..., session_dir: _Optional[str] = ..., resources_total: _Optional[_Mapping[str, float]] = ..., resources_available: _Optional[_Mapping[str, float]] = ..., labels: _Optional[_Mapping[str, str]] = ..., state: _Optional[_Union[NodeInfo.NodeState, str]] = ..., death_reason: _Optional[str] = ..., start_time_ms: _Optional[int] = ..., end_time_ms: _Optional[int] = ..., is_head_node: _Optional[bool] = ..., rayops_version: _Optional[str] = ..., object_store_stats: _Optional[_Union[ObjectStoreStats, _Mapping]] = ..., last_report_time_ms: _Optional[int] = ..., pending_demand: _Optional[_Iterable[_Union[ResourceDemand, _Mapping]]] = ..., metrics_export_port: _Optional[int] = ..., agent_port: _Optional[int] = ...) -> None: ...

class JobInfo(_message.Message):
    __slots__ = ("job_id", "job_id_hex", "driver_pid", "driver_ip", "namespace", "entrypoint", "start_time_ms", "end_time_ms", "is_dead")
    JOB_ID_FIELD_NUMBER: _ClassVar[int]
    JOB_ID_HEX_FIELD_NUMBER: _ClassVar[int]
    DRIVER_PID_FIELD_NUMBER: _ClassVar[int]
    DRIVER_IP_FIELD_NUMBER: _ClassVar[int]
    NAMESPACE_FIELD_NUMBER: _ClassVar[int]
    ENTRYPOINT_FIELD_NUMBER: _ClassVar[int]
    START_TIME_MS_FIELD_NUMBER: _ClassVar[int]
    END_TIME_MS_FIELD_NUMBER: _ClassVar[int]
    IS_DEAD_FIELD_NUMBER: _ClassVar[int]
    job_id: int
    job_id_hex: str
    driver_pid: int
    driver_ip: str
    namespace: str
    entrypoint: str
    start_time_ms: int
    end_time_ms: int
    is_dead: bool
    def __init__(self, job_id: _Optional[int] = ..., job_id_hex: _Optional[str] = ..., driver_pid: _Optional[int] = ..., driver_ip: _Optional[str] = ..., namespace: _Optional[str] = ..., entrypoint: _Optional[str] = ..., start_time_ms: _Optional[int] = ..., end_time_ms: _Optional[int] = ..., is_dead: _Optional[bool] = ...) -> None: ...

class ResourceDemand(_message.Message):
    __slots__ = ("shape", "count", "infeasible")
    class ShapeEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: float
        def __init__(self, key: _Optional[str] = ..., value: _Optional[float] = ...) -> None: ...
    SHAPE_FIELD_NUMBER: _ClassVar[int]
    COUNT_FIELD_NUMBER: _ClassVar[int]
    INFEASIBLE_FIELD_NUMBER: _ClassVar[int]
    shape: _containers.ScalarMap[str, float]
    count: int
    infeasible: bool
    def __init__(self, shape: _Optional[_Mapping[str, float]] = ..., count: _Optional[int] = ..., infeasible: _Optional[bool] = ...) -> None: ...
