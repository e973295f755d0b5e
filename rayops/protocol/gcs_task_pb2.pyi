# ruff: noqa
from . import gcs_actor_pb2 as _gcs_actor_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class TaskDescriptor(_message.Message):
    __slots__ = ("name", "func_or_class_name", "type", "job_id", "actor_id", "parent_task_id", "required_resources")
    class RequiredResourcesEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: float
        def __init__(self, key: _Optional[str] = ..., value: _Optional[float] = ...) -> None: ...
    NAME_FIELD_NUMBER: _ClassVar[int]
    FUNC_OR_CLASS_NAME_FIELD_NUMBER: _ClassVar[int]
    TYPE_FIELD_NUMBER: _ClassVar[int]
    JOB_ID_FIELD_NUMBER: _ClassVar[int]
    ACTOR_ID_FIELD_NUMBER: _ClassVar[int]
    PARENT_TASK_ID_FIELD_NUMBER: _ClassVar[int]
    REQUIRED_RESOURCES_FIELD_NUMBER: _ClassVar[int]
    name: str
    func_or_class_name: str
    type: str
    job_id: int
    actor_id: bytes
    parent_task_id: bytes
    required_resources: _containers.ScalarMap[str, float]
    def __init__(self, name: _Optional[str] = ..., func_or_class_name: _Optional[str] = ..., type: _Optional[str] = ..., job_id: _Optional[int] = ..., actor_id: _Optional[bytes] = ..., parent_task_id: _Optional[bytes] = ..., required_resources: _Optional[_Mapping[str, float]] = ...) -> None: ...

class TaskError(_message.Message):
    __slots__ = ("index", "error_type", "message")
    INDEX_FIELD_NUMBER: _ClassVar[int]
    ERROR_TYPE_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    index: int
    error_type: str
    message: str
    def __init__(self, index: _Optional[int] = ..., error_type: _Optional[str] = ..., message: _Optional[str] = ...) -> None: ...

class TaskEventBatch(_message.Message):
    __slots__ = ("task_ids", "attempts", "states", "times_ns", "descriptor", "descriptors", "errors", "executor", "node_id", "worker_id", "worker_pid", "job_id", "dropped")
    TASK_IDS_FIELD_NUMBER: _ClassVar[int]
    ATTEMPTS_FIELD_NUMBER: _ClassVar[int]
    STATES_FIELD_NUMBER: _ClassVar[int]
    TIMES_NS_FIELD_NUMBER: _ClassVar[int]
    DESCRIPTOR_FIELD_NUMBER: _ClassVar[int]
    DESCRIPTORS_FIELD_NUMBER: _ClassVar[int]
    ERRORS_FIELD_NUMBER: _ClassVar[int]
    EXECUTOR_FIELD_NUMBER: _ClassVar[int]
    NODE_ID_FIELD_NUMBER: _ClassVar[int]
    WORKER_ID_FIELD_NUMBER: _ClassVar[int]
    WORKER_PID_FIELD_NUMBER: _ClassVar[int]
    JOB_ID_FIELD_NUMBER: _ClassVar[int]
    DROPPED_FIELD_NUMBER: _ClassVar[int]
    task_ids: bytes
    attempts: _containers.RepeatedScalarFieldContainer[int]
    states: bytes
    times_ns: bytes
    descriptor: _containers.RepeatedScalarFieldContainer[int]
    descriptors: _containers.RepeatedCompositeFieldContainer[TaskDescriptor]
    errors: _containers.RepeatedCompositeFieldContainer[TaskError]
    executor: bool
    node_id: str
    worker_id: bytes
    worker_pid: int
    job_id: int
    dropped: int
    def __init__(self, task_ids: _Optional[bytes] = ..., attempts: _Optional[_Iterable[int]] = ..., states: _Optional[bytes] = ..., times_ns: _Optional[bytes] = ..., descriptor: _Optional[_Iterable[int]] = ..., descriptors: _Optional[_Iterable[_Union[TaskDescriptor, _Mapping]]] = ..., errors: _Optional[_Iterable[_Union[TaskError, _Mapping]]] = ..., executor: _Optional[bool] = ..., node_id: _Optional[str] = ..., worker_id: _Optional[bytes] = ..., worker_pid: _Optional[int] = ..., job_id: _Optional[int] = ..., dropped: _Optional[int] = ...) -> None: ...

class JobDrops(_message.Message):
    __slots__ = ("job_id", "dropped")
    JOB_ID_FIELD_NUMBER: _ClassVar[int]
    DROPPED_FIELD_NUMBER: _ClassVar[int]
    job_id: int
    dropped: int
    def __init__(self, job_id: _Optional[int] = ..., dropped: _Optional[int] = ...) -> None: ...

class AddTaskEventDataRequest(_message.Message):
    __slots__ = ("batches", "dropped")
    BATCHES_FIELD_NUMBER: _ClassVar[int]
    DROPPED_FIELD_NUMBER: _ClassVar[int]
    batches: _containers.RepeatedCompositeFieldContainer[TaskEventBatch]
    dropped: _containers.RepeatedCompositeFieldContainer[JobDrops]
    def __init__(self, batches: _Optional[_Iterable[_Union[TaskEventBatch, _Mapping]]] = ..., dropped: _Optional[_Iterable[_Union[JobDrops, _Mapping]]] = ...) -> None: ...

class AddTaskEventDataReply(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class GetTaskEventsRequest(_message.Message):
    __slots__ = ("has_job_id", "job_id", "task_id", "limit")
    HAS_JOB_ID_FIELD_NUMBER: _ClassVar[int]
    JOB_ID_FIELD_NUMBER: _ClassVar[int]
    TASK_ID_FIELD_NUMBER: _ClassVar[int]
    LIMIT_FIELD_NUMBER: _ClassVar[int]
    has_job_id: bool
    job_id: int
    task_id: bytes
    limit: int
    def __init__(self, has_job_id: _Optional[bool] = ..., job_id: _Optional[int] = ..., task_id: _Optional[bytes] = ..., limit: _Optional[int] = ...) -> None: ...

class TaskAttempt(_message.Message):
    __slots__ = ("task_id", "attempt", "state", "name", "func_or_class_name", "type", "job_id", "actor_id", "parent_task_id", "required_resources", "node_id", "worker_id", "worker_pid", "error_type", "error_message", "state_ts_ms")
    class RequiredResourcesEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: float
        def __init__(self, key: _Optional[str] = ..., value: _Optional[float] = ...) -> None: ...
    class StateTsMsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: int
        def __init__(self, key: _Optional[str] = ..., value: _Optional[int] = ...) -> None: ...
    TASK_ID_FIELD_NUMBER: _ClassVar[int]
    ATTEMPT_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    FUNC_OR_CLASS_NAME_FIELD_NUMBER: _ClassVar[int]
    TYPE_FIELD_NUMBER: _ClassVar[int]
    JOB_ID_FIELD_NUMBER: _ClassVar[int]
    ACTOR_ID_FIELD_NUMBER: _ClassVar[int]
    PARENT_TASK_ID_FIELD_NUMBER: _ClassVar[int]
    REQUIRED_RESOURCES_FIELD_NUMBER: _ClassVar[int]
    NODE_ID_FIELD_NUMBER: _ClassVar[int]
    WORKER_ID_FIELD_NUMBER: _ClassVar[int]
    WORKER_PID_FIELD_NUMBER: _ClassVar[int]
    ERROR_TYPE_FIELD_NUMBER: _ClassVar[int]
    ERROR_MESSAGE_FIELD_NUMBER: _ClassVar[int]
    STATE_TS_MS_FIELD_NUMBER: _ClassVar[int]
    task_id: bytes
    attempt: int
    state: str
    name: str
    func_or_class_name: str
    type: str
    job_id: int
    actor_id: bytes
    parent_task_id: bytes
    required_resources: _containers.ScalarMap[str, float]
    node_id: str
    worker_id: bytes
    worker_pid: int
    error_type: str
    error_message: str
    state_ts_ms: _containers.ScalarMap[str, int]
    def __init__(self, task_id: _Optional[bytes] = ..., attempt: _Optional[int] = ..., state: _Optional[str] = ..., name: _Optional[str] = ..., func_or_class_name: _Optional[str] = ..., type: _Optional[str] = ..., job_id: _Optional[int] = ..., actor_id: _Optional[bytes] = ..., parent_task_id: _Optional[bytes] = ..., required_resources: _Optional[_Mapping[str, float]] = ..., node_id: _Optional[str] = ..., worker_id: _Optional[bytes] = ..., worker_pid: _Optional[int] = ..., error_type: _Optional[str] = ..., error_message: _Optional[str] = ..., state_ts_ms: _Optional[_Mapping[str, int]] = ...) -> None: ...

class GetTaskEventsReply(_message.Message):
    __slots__ = ("tasks", "total", "num_evicted", "num_dropped", "dropped_by_job")
    TASKS_FIELD_NUMBER: _ClassVar[int]
    TOTAL_FIELD_NUMBER: _ClassVar[int]
    NUM_EVICTED_FIELD_NUMBER: _ClassVar[int]
    NUM_DROPPED_FIELD_NUMBER: _ClassVar[int]
    DROPPED_BY_JOB_FIELD_NUMBER: _ClassVar[int]
    tasks: _containers.RepeatedCompositeFieldContainer[TaskAttempt]
    total: int
    num_evicted: int
    num_dropped: int
    dropped_by_job: _containers.RepeatedCompositeFieldContainer[JobDrops]
    def __init__(self, tasks: _Optional[_Iterable[_Union[TaskAttempt, _Mapping]]] = ..., total: _Optional[int] = ..., num_evicted: _Optional[int] = ..., num_dropped: _Optional[int] = ..., dropped_by_job: _Optional[_Iterable[_Union[JobDrops, _Mapping]]] = ...) -> None: ...

class ListActorsRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class ListActorsReply(_message.Message):
    __slots__ = ("actors",)
    ACTORS_FIELD_NUMBER: _ClassVar[int]
    actors: _containers.RepeatedCompositeFieldContainer[_gcs_actor_pb2.ActorInfo]
    def __init__(self, actors: _Optional[_Iterable[_Union[_gcs_actor_pb2.ActorInfo, _Mapping]]] = ...) -> None: ...
