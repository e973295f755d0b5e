# ruff: noqa
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class GetClusterMetricsRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class LatencyHistogram(_message.Message):
    __slots__ = ("key", "bounds", "counts", "sum")
    KEY_FIELD_NUMBER: _ClassVar[int]
    BOUNDS_FIELD_NUMBER: _ClassVar[int]
    COUNTS_FIELD_NUMBER: _ClassVar[int]
    SUM_FIELD_NUMBER: _ClassVar[int]
    key: str
    bounds: _containers.RepeatedScalarFieldContainer[float]
    counts: _containers.RepeatedScalarFieldContainer[int]
    sum: float
    def __init__(self, key: _Optional[str] = ..., bounds: _Optional[_Iterable[float]] = ..., counts: _Optional[_Iterable[int]] = ..., sum: _Optional[float] = ...) -> None: ...

class NodeCount(_message.Message):
    __slots__ = ("node_type", "state", "count")
    NODE_TYPE_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    COUNT_FIELD_NUMBER: _ClassVar[int]
    node_type: str
    state: str
    count: int
    def __init__(self, node_type: _Optional[str] = ..., state: _Optional[str] = ..., count: _Optional[int] = ...) -> None: ...

class ActorCount(_message.Message):
    __slots__ = ("state", "class_name", "count")
    STATE_FIELD_NUMBER: _ClassVar[int]
    CLASS_NAME_FIELD_NUMBER: _ClassVar[int]
    COUNT_FIELD_NUMBER: _ClassVar[int]
    state: str
    class_name: str
    count: int
    def __init__(self, state: _Optional[str] = ..., class_name: _Optional[str] = ..., count: _Optional[int] = ...) -> None: ...

class GetClusterMetricsReply(_message.Message):
    __slots__ = ("gcs_pid", "nodes", "actors", "running_jobs", "finished_jobs", "grpc_latency_ms", "placement_time_s")
    GCS_PID_FIELD_NUMBER: _ClassVar[int]
    NODES_FIELD_NUMBER: _ClassVar[int]
    ACTORS_FIELD_NUMBER: _ClassVar[int]
    RUNNING_JOBS_FIELD_NUMBER: _ClassVar[int]
    FINISHED_JOBS_FIELD_NUMBER: _ClassVar[int]
    GRPC_LATENCY_MS_FIELD_NUMBER: _ClassVar[int]
    PLACEMENT_TIME_S_FIELD_NUMBER: _ClassVar[int]
    gcs_pid: int
    nodes: _containers.RepeatedCompositeFieldContainer[NodeCount]
    actors: _containers.RepeatedCompositeFieldContainer[ActorCount]
    running_jobs: int
    finished_jobs: int
    grpc_latency_ms: _containers.RepeatedCompositeFieldContainer[LatencyHistogram]
    placement_time_s: _containers.RepeatedCompositeFieldContainer[LatencyHistogram]
    def __init__(self, gcs_pid: _Optional[int] = ..., nodes: _Optional[_Iterable[_Union[NodeCount, _Mapping]]] = ..., actors: _Optional[_Iterable[_Union[ActorCount, _Mapping]]] = ..., running_jobs: _Optional[int] = ..., finished_jobs: _Optional[int] = ..., grpc_latency_ms: _Optional[_Iterable[_Union[LatencyHistogram, _Mapping]]] = ..., placement_time_s: _Optional[_Iterable[_Union[LatencyHistogram, _Mapping]]] = ...) -> None: ...
