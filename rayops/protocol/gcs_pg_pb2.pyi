# ruff: noqa
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class Bundle(_message.Message):
    __slots__ = ("resources", "label_selector")
    class ResourcesEntry(_message.Message):
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
    RESOURCES_FIELD_NUMBER: _ClassVar[int]
    LABEL_SELECTOR_FIELD_NUMBER: _ClassVar[int]
    resources: _containers.ScalarMap[str, float]
    label_selector: _containers.ScalarMap[str, str]
    def __init__(self, resources: _Optional[_Mapping[str, float]] = ..., label_selector: _Optional[_Mapping[str, str]] = ...) -> None: ...

class PlacementGroupInfo(_message.Message):
    __slots__ = ("placement_group_id", "name", "ray_namespace", "strategy", "bundles", "bundle_nodes", "state", "creator_job_id", "is_detached", "scheduling_state", "scheduling_attempts", "creation_latency_ms")
    class BundleNodesEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: int
        value: str
        def __init__(self, key: _Optional[int] = ..., value: _Optional[str] = ...) -> None: ...
    PLACEMENT_GROUP_ID_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    RAY_NAMESPACE_FIELD_NUMBER: _ClassVar[int]
    STRATEGY_FIELD_NUMBER: _ClassVar[int]
    BUNDLES_FIELD_NUMBER: _ClassVar[int]
    BUNDLE_NODES_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    CREATOR_JOB_ID_FIELD_NUMBER: _ClassVar[int]
    IS_DETACHED_FIELD_NUMBER: _ClassVar[int]
    SCHEDULING_STATE_FIELD_NUMBER: _ClassVar[int]
    SCHEDULING_ATTEMPTS_FIELD_NUMBER: _ClassVar[int]
    CREATION_LATENCY_MS_FIELD_NUMBER: _ClassVar[int]
    placement_group_id: bytes
    name: str
    ray_namespace: str
    strategy: str
    bundles: _containers.RepeatedCompositeFieldContainer[Bundle]
    bundle_nodes: _containers.ScalarMap[int, str]
    state: str
    creator_job_id: int
    is_detached: bool
    scheduling_state: str
    scheduling_attempts: int
    creation_latency_ms: float
    def __init__(self, placement_group_id: _Optional[bytes] = ..., name: _Optional[str] = ..., ray_namespace: _Optional[str] = ..., strategy: _Optional[str] = ..., bundles: _Optional[_Iterable[_Union[Bundle, _Mapping]]] = ..., bundle_nodes: _Optional[_Mapping[int, str]] = ..., state: _Optional[str] = ..., creator_job_id: _Optional[int] = ..., is_detached: _Optional[bool] = ..., scheduling_state: _Optional[str] = ..., scheduling_attempts: _Optional[int] = ..., creation_latency_ms: _Optional[float] = ...) -> None: ...

class CreatePlacementGroupRequest(_message.Message):
    __slots__ = ("spec",)
    SPEC_FIELD_NUMBER: _ClassVar[int]
    spec: PlacementGroupInfo
    def __init__(self, spec: _Optional[_Union[PlacementGroupInfo, _Mapping]] = ...) -> None: ...

class CreatePlacementGroupReply(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class CreatePlacementGroupsRequest(_message.Message):
    __slots__ = ("specs", "wait_ms")
    SPECS_FIELD_NUMBER: _ClassVar[int]
    WAIT_MS_FIELD_NUMBER: _ClassVar[int]
    specs: _containers.RepeatedCompositeFieldContainer[PlacementGroupInfo]
    wait_ms: int
    def __init__(self, specs: _Optional[_Iterable[_Union[PlacementGroupInfo, _Mapping]]] = ..., wait_ms: _Optional[int] = ...) -> None: ...

class CreatePlacementGroupsReply(_message.Message):
    __slots__ = ("states", "errors")
    STATES_FIELD_NUMBER: _ClassVar[int]
    ERRORS_FIELD_NUMBER: _ClassVar[int]
    states: _containers.RepeatedScalarFieldContainer[str]
    errors: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, states: _Optional[_Iterable[str]] = ..., errors: _Optional[_Iterable[str]] = ...) -> None: ...

class RemovePlacementGroupsRequest(_message.Message):
    __slots__ = ("placement_group_ids",)
    PLACEMENT_GROUP_IDS_FIELD_NUMBER: _ClassVar[int]
    placement_group_ids: _containers.RepeatedScalarFieldContainer[bytes]
    def __init__(self, placement_group_ids: _Optional[_Iterable[bytes]] = ...) -> None: ...

class RemovePlacementGroupsReply(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class GetPlacementGroupRequest(_message.Message):
    __slots__ = ("placement_group_id", "name", "ray_namespace")
    PLACEMENT_GROUP_ID_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    RAY_NAMESPACE_FIELD_NUMBER: _ClassVar[int]
    placement_group_id: bytes
    name: str
    ray_namespace: str
    def __init__(self, placement_group_id: _Optional[bytes] = ..., name: _Optional[str] = ..., ray_namespace: _Optional[str] = ...) -> None: ...

class GetPlacementGroupReply(_message.Message):
    __slots__ = ("found", "info")
    FOUND_FIELD_NUMBER: _ClassVar[int]
    INFO_FIELD_NUMBER: _ClassVar[int]
    found: bool
    info: PlacementGroupInfo
    def __init__(self, found: _Optional[bool] = ..., info: _Optional[_Union[PlacementGroupInfo, _Mapping]] = ...) -> None: ...

class GetAllPlacementGroupRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class GetAllPlacementGroupReply(_message.Message):
    __slots__ = ("groups",)
    GROUPS_FIELD_NUMBER: _ClassVar[int]
    groups: _containers.RepeatedCompositeFieldContainer[PlacementGroupInfo]
    def __init__(self, groups: _Optional[_Iterable[_Union[PlacementGroupInfo, _Mapping]]] = ...) -> None: ...

class WaitPlacementGroupRequest(_message.Message):
    __slots__ = ("placement_group_id", "timeout_ms")
    PLACEMENT_GROUP_ID_FIELD_NUMBER: _ClassVar[int]
    TIMEOUT_MS_FIELD_NUMBER: _ClassVar[int]
    placement_group_id: bytes
    timeout_ms: int
    def __init__(self, placement_group_id: _Optional[bytes] = ..., timeout_ms: _Optional[int] = ...) -> None: ...

class WaitPlacementGroupReply(_message.Message):
    __slots__ = ("state",)
    STATE_FIELD_NUMBER: _ClassVar[int]
    state: str
    def __init__(self, state: _Optional[str] = ...) -> None: ...
