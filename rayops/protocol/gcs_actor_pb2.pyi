# ruff: noqa
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class ActorInfo(_message.Message):
    __slots__ = ("actor_id", "class_name", "job_id", "address_ip", "address_port", "node_id", "pid", "worker_id", "state", "version", "num_restarts", "max_restarts", "death_cause", "death_error", "name", "ray_namespace", "is_detached", "handle_meta", "owner_address")
    class ActorState(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
        __slots__ = ()
        ACTOR_STATE_UNSPECIFIED: _ClassVar[ActorInfo.ActorState]
        PENDING_CREATION: _ClassVar[ActorInfo.ActorState]
        ALIVE: _ClassVar[ActorInfo.ActorState]
        RESTARTING: _ClassVar[ActorInfo.ActorState]
        DEAD: _ClassVar[ActorInfo.ActorState]
    ACTOR_STATE_UNSPECIFIED: ActorInfo.ActorState
    PENDING_CREATION: ActorInfo.ActorState
    ALIVE: ActorInfo.ActorState
    RESTARTING: ActorInfo.ActorState
    DEAD: ActorInfo.ActorState
    ACTOR_ID_FIELD_NUMBER: _ClassVar[int]
    CLASS_NAME_FIELD_NUMBER: _ClassVar[int]
    JOB_ID_FIELD_NUMBER: _ClassVar[int]
    ADDRESS_IP_FIELD_NUMBER: _ClassVar[int]
    ADDRESS_PORT_FIELD_NUMBER: _ClassVar[int]
    NODE_ID_FIELD_NUMBER: _ClassVar[int]
    PID_FIELD_NUMBER: _ClassVar[int]
    WORKER_ID_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    NUM_RESTARTS_FIELD_NUMBER: _ClassVar[int]
    MAX_RESTARTS_FIELD_NUMBER: _ClassVar[int]
    DEATH_CAUSE_FIELD_NUMBER: _ClassVar[int]
    DEATH_ERROR_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    RAY_NAMESPACE_FIELD_NUMBER: _ClassVar[int]
    IS_DETACHED_FIELD_NUMBER: _ClassVar[int]
    HANDLE_META_FIELD_NUMBER: _ClassVar[int]
    OWNER_ADDRESS_FIELD_NUMBER: _ClassVar[int]
    actor_id: bytes
    class_name: str
    job_id: int
    address_ip: str
    address_port: int
    node_id: str
    pid: int
    worker_id: bytes
    state: ActorInfo.ActorState
    version: int
    num_restarts: int
    max_restarts: int
    death_cause: str
    death_error: bytes
    name: str
    ray_namespace: str
    is_detached: bool
    handle_meta: bytes
    owner_address: str
    def __init__(self, actor_id: _Optional[bytes] = ..., class_name: _Optional[str] = ..., job_id: _Optional[int] = ..., address_ip: _Optional[str] = ..., address_port: _Optional[int] = ..., node_id: _Optional[str] = ..., pid: _Optional[int] = ..., worker_id: _Optional[bytes] = ..., state: _Optional[_Union[ActorInfo.ActorState, str]] = ..., version: _Optional[int] = ..., num_restarts: _Optional[int] = ..., max_restarts: _Optional[int] = ..., death_cause: _Optional[str] = ..., death_error: _Optional[bytes] = ..., name: _Optional[str] = ..., ray_namespace: _Optional[str] = ..., is_detached: _Optional[bool] = ..., handle_meta: _Optional[bytes] = ..., owner_address: _Optional[str] = ...) -> None: ...

class RegisterActorRequest(_message.Message):
    __slots__ = ("actor_id", "class_name", "job_id", "name", "ray_namespace", "get_if_exists", "is_detached", "max_restarts", "placement_resources", "hold_resources", "creation_spec", "handle_meta", "owner_address", "label_selector", "scheduling_strategy", "affinity_node_id", "affinity_soft", "owner_node_id", "runtime_env")
    class PlacementResourcesEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: float
        def __init__(self, key: _Optional[str] = ..., value: _Optional[float] = ...) -> None: ...
    class HoldResourcesEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: float
        def __init__(self, key: _Optional[str] = ..., value: _Optional[float] = ...) -> None: ...
    class LabelSelectorEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    ACTOR_ID_FIELD_NUMBER: _ClassVar[int]
    CLASS_NAME_FIELD_NUMBER: _ClassVar[int]
    JOB_ID_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    RAY_NAMESPACE_FIELD_NUMBER: _ClassVar[int]
    GET_IF_EXISTS_FIELD_NUMBER: _ClassVar[int]
    IS_DETACHED_FIELD_NUMBER: _ClassVar[int]
    MAX_RESTARTS_FIELD_NUMBER: _ClassVar[int]
    PLACEMENT_RESOURCES_FIELD_NUMBER: _ClassVar[int]
    HOLD_RESOURCES_FIELD_NUMBER: _ClassVar[int]
    CREATION_SPEC_FIELD_NUMBER: _ClassVar[int]
    HANDLE_META_FIELD_NUMBER: _ClassVar[int]
    OWNER_ADDRESS_FIELD_NUMBER: _ClassVar[int]
    LABEL_SELECTOR_FIELD_NUMBER: _ClassVar[int]
    SCHEDULING_STRATEGY_FIELD_NUMBER: _ClassVar[int]
    AFFINITY_NODE_ID_FIELD_NUMBER: _ClassVar[int]
    AFFINITY_SOFT_FIELD_NUMBER: _ClassVar[int]
    OWNER_NODE_ID_FIELD_NUMBER: _ClassVar[int]
    RUNTIME_ENV_FIELD_NUMBER: _ClassVar[int]
    actor_id: bytes
    class_name: str
    job_id: int
    name: str
    ray_namespace: str
    get_if_exists: bool
    is_detached: bool
    max_restarts: int
    placement_resources: _containers.ScalarMap[str, float]
    hold_resources: _containers.ScalarMap[str, float]
    creation_spec: bytes
    handle_meta: bytes
    owner_address: str
    label_selector: _containers.ScalarMap[str, str]
    scheduling_strategy: str
    affinity_node_id: str
    affinity_soft: bool
    owner_node_id: str
    runtime_env: str
    def __init__(self, actor_id: _Optional[bytes] = ..., class_name: _Optional[str] = ..., job_id: _Optional[int] = ..., name: _Optional[str] = ..., ray_namespace: _Optional[str] = ..., get_if_exists: _Optional[bool] = ..., is_detached: _Optional[bool] = ..., max_restarts: _Optional[int] = ..., placement_resources: _Optional[_Mapping[str, float]] = ..., hold_resources: _Optional[_Mapping[str, float]] = ..., creation_spec: _Optional[bytes] = ..., handle_meta: _Optional[bytes] = ..., owner_address: _Optional[str] = ..., label_selector: _Optional[_Mapping[str, str]] = ..., scheduling_strategy: _Optional[str] = ..., affinity_node_id: _Optional[str] = ..., affinity_soft: _Optional[bool] = ..., owner_node_id: _Optional[str] = ..., runtime_env: _Optional[str] = ...) -> None: ...

class RegisterActorReply(_message.Message):
    __slots__ = ("actor_info", "existed")
    ACTOR_INFO_FIELD_NUMBER: _ClassVar[int]
    EXISTED_FIELD_NUMBER: _ClassVar[int]
    actor_info: ActorInfo
    existed: bool
    def __init__(self, actor_info: _Optional[_Union[ActorInfo, _Mapping]] = ..., existed: _Optional[bool] = ...) -> None: ...

class GetActorInfoRequest(_message.Message):
    __slots__ = ("actor_id",)
    ACTOR_ID_FIELD_NUMBER: _ClassVar[int]
    actor_id: bytes
    def __init__(self, actor_id: _Optional[bytes] = ...) -> None: ...

class GetActorInfoReply(_message.Message):
    __slots__ = ("found", "actor_info")
    FOUND_FIELD_NUMBER: _ClassVar[int]
    ACTOR_INFO_FIELD_NUMBER: _ClassVar[int]
    found: bool
    actor_info: ActorInfo
    def __init__(self, found: _Optional[bool] = ..., actor_info: _Optional[_Union[ActorInfo, _Mapping]] = ...) -> None: ...

class GetNamedActorRequest(_message.Message):
    __slots__ = ("name", "ray_namespace")
    NAME_FIELD_NUMBER: _ClassVar[int]
    RAY_NAMESPACE_FIELD_NUMBER: _ClassVar[int]
    name: str
    ray_namespace: str
    def __init__(self, name: _Optional[str] = ..., ray_namespace: _Optional[str] = ...) -> None: ...

class GetNamedActorReply(_message.Message):
    __slots__ = ("actor_info",)
    ACTOR_INFO_FIELD_NUMBER: _ClassVar[int]
    actor_info: ActorInfo
    def __init__(self, actor_info: _Optional[_Union[ActorInfo, _Mapping]] = ...) -> None: ...

class ListNamedActorsRequest(_message.Message):
    __slots__ = ("all_namespaces", "ray_namespace")
    ALL_NAMESPACES_FIELD_NUMBER: _ClassVar[int]
    RAY_NAMESPACE_FIELD_NUMBER: _ClassVar[int]
    all_namespaces: bool
    ray_namespace: str
    def __init__(self, all_namespaces: _Optional[bool] = ..., ray_namespace: _Optional[str] = ...) -> None: ...

class NamedActor(_message.Message):
    __slots__ = ("name", "ray_namespace")
    NAME_FIELD_NUMBER: _ClassVar[int]
    RAY_NAMESPACE_FIELD_NUMBER: _ClassVar[int]
    name: str
    ray_namespace: str
    def __init__(self, name: _Optional[str] = ..., ray_namespace: _Optional[str] = ...) -> None: ...

class ListNamedActorsReply(_message.Message):
    __slots__ = ("actors",)
    ACTORS_FIELD_NUMBER: _ClassVar[int]
    actors: _containers.RepeatedCompositeFieldContainer[NamedActor]
    def __init__(self, actors: _Optional[_Iterable[_Union[NamedActor, _Mapping]]] = ...) -> None: ...

class KillActorRequest(_message.Message):
    __slots__ = ("actor_id", "no_restart")
    ACTOR_ID_FIELD_NUMBER: _ClassVar[int]
    NO_RESTART_FIELD_NUMBER: _ClassVar[int]
    actor_id: bytes
    no_restart: bool
    def __init__(self, actor_id: _Optional[bytes] = ..., no_restart: _Optional[bool] = ...) -> None: ...

class KillActorReply(_message.Message):
    __slots__ = ("found",)
    FOUND_FIELD_NUMBER: _ClassVar[int]
    found: bool
    def __init__(self, found: _Optional[bool] = ...) -> None: ...

class ReportActorOutOfScopeRequest(_message.Message):
    __slots__ = ("actor_id",)
    ACTOR_ID_FIELD_NUMBER: _ClassVar[int]
    actor_id: bytes
    def __init__(self, actor_id: _Optional[bytes] = ...) -> None: ...

class ReportActorOutOfScopeReply(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class ReportWorkerDeathRequest(_message.Message):
    __slots__ = ("node_id", "worker_id", "reason", "worker_address")
    NODE_ID_FIELD_NUMBER: _ClassVar[int]
    WORKER_ID_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    WORKER_ADDRESS_FIELD_NUMBER: _ClassVar[int]
    node_id: str
    worker_id: bytes
    reason: str
    worker_address: str
    def __init__(self, node_id: _Optional[str] = ..., worker_id: _Optional[bytes] = ..., reason: _Optional[str] = ..., worker_address: _Optional[str] = ...) -> None: ...

class ReportWorkerDeathReply(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...
