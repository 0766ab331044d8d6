from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class Decision(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    DECISION_UNSPECIFIED: _ClassVar[Decision]
    DECISION_ALLOW: _ClassVar[Decision]
    DECISION_DENY: _ClassVar[Decision]
    DECISION_ALLOW_REDACTED: _ClassVar[Decision]

class Stage(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    STAGE_UNSPECIFIED: _ClassVar[Stage]
    STAGE_INPUT: _ClassVar[Stage]
    STAGE_OUTPUT: _ClassVar[Stage]
DECISION_UNSPECIFIED: Decision
DECISION_ALLOW: Decision
DECISION_DENY: Decision
DECISION_ALLOW_REDACTED: Decision
STAGE_UNSPECIFIED: Stage
STAGE_INPUT: Stage
STAGE_OUTPUT: Stage

class ToolContext(_message.Message):
    __slots__ = ("run_id", "model", "tool_call_id")
    RUN_ID_FIELD_NUMBER: _ClassVar[int]
    MODEL_FIELD_NUMBER: _ClassVar[int]
    TOOL_CALL_ID_FIELD_NUMBER: _ClassVar[int]
    run_id: str
    model: str
    tool_call_id: str
    def __init__(self, run_id: _Optional[str] = ..., model: _Optional[str] = ..., tool_call_id: _Optional[str] = ...) -> None: ...

class CheckToolRequest(_message.Message):
    __slots__ = ("tool", "arguments_json", "context")
    TOOL_FIELD_NUMBER: _ClassVar[int]
    ARGUMENTS_JSON_FIELD_NUMBER: _ClassVar[int]
    CONTEXT_FIELD_NUMBER: _ClassVar[int]
    tool: str
    arguments_json: str
    context: ToolContext
    def __init__(self, tool: _Optional[str] = ..., arguments_json: _Optional[str] = ..., context: _Optional[_Union[ToolContext, _Mapping]] = ...) -> None: ...

class Finding(_message.Message):
    __slots__ = ("policy", "rule", "category", "action", "audit", "path")
    POLICY_FIELD_NUMBER: _ClassVar[int]
    RULE_FIELD_NUMBER: _ClassVar[int]
    CATEGORY_FIELD_NUMBER: _ClassVar[int]
    ACTION_FIELD_NUMBER: _ClassVar[int]
    AUDIT_FIELD_NUMBER: _ClassVar[int]
    PATH_FIELD_NUMBER: _ClassVar[int]
    policy: str
    rule: str
    category: str
    action: str
    audit: bool
    path: str
    def __init__(self, policy: _Optional[str] = ..., rule: _Optional[str] = ..., category: _Optional[str] = ..., action: _Optional[str] = ..., audit: _Optional[bool] = ..., path: _Optional[str] = ...) -> None: ...

class CheckToolResponse(_message.Message):
    __slots__ = ("decision", "policy", "rule", "reason", "redacted_arguments_json", "findings")
    DECISION_FIELD_NUMBER: _ClassVar[int]
    POLICY_FIELD_NUMBER: _ClassVar[int]
    RULE_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    REDACTED_ARGUMENTS_JSON_FIELD_NUMBER: _ClassVar[int]
    FINDINGS_FIELD_NUMBER: _ClassVar[int]
    decision: Decision
    policy: str
    rule: str
    reason: str
    redacted_arguments_json: str
    findings: _containers.RepeatedCompositeFieldContainer[Finding]
    def __init__(self, decision: _Optional[_Union[Decision, str]] = ..., policy: _Optional[str] = ..., rule: _Optional[str] = ..., reason: _Optional[str] = ..., redacted_arguments_json: _Optional[str] = ..., findings: _Optional[_Iterable[_Union[Finding, _Mapping]]] = ...) -> None: ...

class ValidateTextRequest(_message.Message):
    __slots__ = ("text", "stage")
    TEXT_FIELD_NUMBER: _ClassVar[int]
    STAGE_FIELD_NUMBER: _ClassVar[int]
    text: str
    stage: Stage
    def __init__(self, text: _Optional[str] = ..., stage: _Optional[_Union[Stage, str]] = ...) -> None: ...

class ValidateTextResponse(_message.Message):
    __slots__ = ("decision", "policy", "rule", "reason", "redacted_text", "findings")
    DECISION_FIELD_NUMBER: _ClassVar[int]
    POLICY_FIELD_NUMBER: _ClassVar[int]
    RULE_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    REDACTED_TEXT_FIELD_NUMBER: _ClassVar[int]
    FINDINGS_FIELD_NUMBER: _ClassVar[int]
    decision: Decision
    policy: str
    rule: str
    reason: str
    redacted_text: str
    findings: _containers.RepeatedCompositeFieldContainer[Finding]
    def __init__(self, decision: _Optional[_Union[Decision, str]] = ..., policy: _Optional[str] = ..., rule: _Optional[str] = ..., reason: _Optional[str] = ..., redacted_text: _Optional[str] = ..., findings: _Optional[_Iterable[_Union[Finding, _Mapping]]] = ...) -> None: ...

class GetBudgetRequest(_message.Message):
    __slots__ = ("name",)
    NAME_FIELD_NUMBER: _ClassVar[int]
    name: str
    def __init__(self, name: _Optional[str] = ...) -> None: ...

class Budget(_message.Message):
    __slots__ = ("name", "subject_kind", "subject_name", "enforcement", "limit_micros", "spent_micros", "reserved_micros", "remaining_micros", "period_start", "period_end", "exhausted", "parent")
    NAME_FIELD_NUMBER: _ClassVar[int]
    SUBJECT_KIND_FIELD_NUMBER: _ClassVar[int]
    SUBJECT_NAME_FIELD_NUMBER: _ClassVar[int]
    ENFORCEMENT_FIELD_NUMBER: _ClassVar[int]
    LIMIT_MICROS_FIELD_NUMBER: _ClassVar[int]
    SPENT_MICROS_FIELD_NUMBER: _ClassVar[int]
    RESERVED_MICROS_FIELD_NUMBER: _ClassVar[int]
    REMAINING_MICROS_FIELD_NUMBER: _ClassVar[int]
    PERIOD_START_FIELD_NUMBER: _ClassVar[int]
    PERIOD_END_FIELD_NUMBER: _ClassVar[int]
    EXHAUSTED_FIELD_NUMBER: _ClassVar[int]
    PARENT_FIELD_NUMBER: _ClassVar[int]
    name: str
    subject_kind: str
    subject_name: str
    enforcement: str
    limit_micros: int
    spent_micros: int
    reserved_micros: int
    remaining_micros: int
    period_start: str
    period_end: str
    exhausted: bool
    parent: str
    def __init__(self, name: _Optional[str] = ..., subject_kind: _Optional[str] = ..., subject_name: _Optional[str] = ..., enforcement: _Optional[str] = ..., limit_micros: _Optional[int] = ..., spent_micros: _Optional[int] = ..., reserved_micros: _Optional[int] = ..., remaining_micros: _Optional[int] = ..., period_start: _Optional[str] = ..., period_end: _Optional[str] = ..., exhausted: _Optional[bool] = ..., parent: _Optional[str] = ...) -> None: ...

class GetBudgetResponse(_message.Message):
    __slots__ = ("budgets",)
    BUDGETS_FIELD_NUMBER: _ClassVar[int]
    budgets: _containers.RepeatedCompositeFieldContainer[Budget]
    def __init__(self, budgets: _Optional[_Iterable[_Union[Budget, _Mapping]]] = ...) -> None: ...
