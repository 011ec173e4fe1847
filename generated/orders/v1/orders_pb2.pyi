import datetime

from google.protobuf import timestamp_pb2 as _timestamp_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class TransactionType(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    TRANSACTION_TYPE_UNSPECIFIED: _ClassVar[TransactionType]
    TRANSACTION_TYPE_BUY: _ClassVar[TransactionType]
    TRANSACTION_TYPE_SELL: _ClassVar[TransactionType]

class OrderStatus(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    ORDER_STATUS_UNSPECIFIED: _ClassVar[OrderStatus]
    ORDER_STATUS_PENDING: _ClassVar[OrderStatus]
    ORDER_STATUS_PROCESSING: _ClassVar[OrderStatus]
    ORDER_STATUS_COMPLETED: _ClassVar[OrderStatus]
    ORDER_STATUS_CANCELLED: _ClassVar[OrderStatus]
TRANSACTION_TYPE_UNSPECIFIED: TransactionType
TRANSACTION_TYPE_BUY: TransactionType
TRANSACTION_TYPE_SELL: TransactionType
ORDER_STATUS_UNSPECIFIED: OrderStatus
ORDER_STATUS_PENDING: OrderStatus
ORDER_STATUS_PROCESSING: OrderStatus
ORDER_STATUS_COMPLETED: OrderStatus
ORDER_STATUS_CANCELLED: OrderStatus

class Order(_message.Message):
    __slots__ = ("order_ref_no", "fund_name", "transaction_type", "quantity", "order_value", "status", "created_on", "updated_on", "attempts", "failure_reason", "confirmation_id")
    ORDER_REF_NO_FIELD_NUMBER: _ClassVar[int]
    FUND_NAME_FIELD_NUMBER: _ClassVar[int]
    TRANSACTION_TYPE_FIELD_NUMBER: _ClassVar[int]
    QUANTITY_FIELD_NUMBER: _ClassVar[int]
    ORDER_VALUE_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    CREATED_ON_FIELD_NUMBER: _ClassVar[int]
    UPDATED_ON_FIELD_NUMBER: _ClassVar[int]
    ATTEMPTS_FIELD_NUMBER: _ClassVar[int]
    FAILURE_REASON_FIELD_NUMBER: _ClassVar[int]
    CONFIRMATION_ID_FIELD_NUMBER: _ClassVar[int]
    order_ref_no: str
    fund_name: str
    transaction_type: TransactionType
    quantity: int
    order_value: str
    status: OrderStatus
    created_on: _timestamp_pb2.Timestamp
    updated_on: _timestamp_pb2.Timestamp
    attempts: int
    failure_reason: str
    confirmation_id: str
    def __init__(self, order_ref_no: _Optional[str] = ..., fund_name: _Optional[str] = ..., transaction_type: _Optional[_Union[TransactionType, str]] = ..., quantity: _Optional[int] = ..., order_value: _Optional[str] = ..., status: _Optional[_Union[OrderStatus, str]] = ..., created_on: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., updated_on: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., attempts: _Optional[int] = ..., failure_reason: _Optional[str] = ..., confirmation_id: _Optional[str] = ...) -> None: ...

class PlaceOrderRequest(_message.Message):
    __slots__ = ("fund_name", "transaction_type", "quantity", "idempotency_key")
    FUND_NAME_FIELD_NUMBER: _ClassVar[int]
    TRANSACTION_TYPE_FIELD_NUMBER: _ClassVar[int]
    QUANTITY_FIELD_NUMBER: _ClassVar[int]
    IDEMPOTENCY_KEY_FIELD_NUMBER: _ClassVar[int]
    fund_name: str
    transaction_type: TransactionType
    quantity: int
    idempotency_key: str
    def __init__(self, fund_name: _Optional[str] = ..., transaction_type: _Optional[_Union[TransactionType, str]] = ..., quantity: _Optional[int] = ..., idempotency_key: _Optional[str] = ...) -> None: ...

class PlaceOrderResponse(_message.Message):
    __slots__ = ("order_ref_no", "status", "order_value", "message")
    ORDER_REF_NO_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    ORDER_VALUE_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    order_ref_no: str
    status: OrderStatus
    order_value: str
    message: str
    def __init__(self, order_ref_no: _Optional[str] = ..., status: _Optional[_Union[OrderStatus, str]] = ..., order_value: _Optional[str] = ..., message: _Optional[str] = ...) -> None: ...

class GetStatusRequest(_message.Message):
    __slots__ = ("order_ref_no",)
    ORDER_REF_NO_FIELD_NUMBER: _ClassVar[int]
    order_ref_no: str
    def __init__(self, order_ref_no: _Optional[str] = ...) -> None: ...

class GetStatusResponse(_message.Message):
    __slots__ = ("order",)
    ORDER_FIELD_NUMBER: _ClassVar[int]
    order: Order
    def __init__(self, order: _Optional[_Union[Order, _Mapping]] = ...) -> None: ...

class WatchOrderRequest(_message.Message):
    __slots__ = ("order_ref_no", "after_sequence")
    ORDER_REF_NO_FIELD_NUMBER: _ClassVar[int]
    AFTER_SEQUENCE_FIELD_NUMBER: _ClassVar[int]
    order_ref_no: str
    after_sequence: int
    def __init__(self, order_ref_no: _Optional[str] = ..., after_sequence: _Optional[int] = ...) -> None: ...

class WatchOrderResponse(_message.Message):
    __slots__ = ("order", "progress", "event", "sequence", "detail", "recorded_on")
    ORDER_FIELD_NUMBER: _ClassVar[int]
    PROGRESS_FIELD_NUMBER: _ClassVar[int]
    EVENT_FIELD_NUMBER: _ClassVar[int]
    SEQUENCE_FIELD_NUMBER: _ClassVar[int]
    DETAIL_FIELD_NUMBER: _ClassVar[int]
    RECORDED_ON_FIELD_NUMBER: _ClassVar[int]
    order: Order
    progress: int
    event: str
    sequence: int
    detail: str
    recorded_on: _timestamp_pb2.Timestamp
    def __init__(self, order: _Optional[_Union[Order, _Mapping]] = ..., progress: _Optional[int] = ..., event: _Optional[str] = ..., sequence: _Optional[int] = ..., detail: _Optional[str] = ..., recorded_on: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class QueueStatsRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class QueueStatsResponse(_message.Message):
    __slots__ = ("waiting", "active", "completed", "failed", "waiting_by_priority")
    class WaitingByPriorityEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: int
        def __init__(self, key: _Optional[str] = ..., value: _Optional[int] = ...) -> None: ...
    WAITING_FIELD_NUMBER: _ClassVar[int]
    ACTIVE_FIELD_NUMBER: _ClassVar[int]
    COMPLETED_FIELD_NUMBER: _ClassVar[int]
    FAILED_FIELD_NUMBER: _ClassVar[int]
    WAITING_BY_PRIORITY_FIELD_NUMBER: _ClassVar[int]
    waiting: int
    active: int
    completed: int
    failed: int
    waiting_by_priority: _containers.ScalarMap[str, int]
    def __init__(self, waiting: _Optional[int] = ..., active: _Optional[int] = ..., completed: _Optional[int] = ..., failed: _Optional[int] = ..., waiting_by_priority: _Optional[_Mapping[str, int]] = ...) -> None: ...

class ListFundsRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class Fund(_message.Message):
    __slots__ = ("name", "nav")
    NAME_FIELD_NUMBER: _ClassVar[int]
    NAV_FIELD_NUMBER: _ClassVar[int]
    name: str
    nav: str
    def __init__(self, name: _Optional[str] = ..., nav: _Optional[str] = ...) -> None: ...

class ListFundsResponse(_message.Message):
    __slots__ = ("funds",)
    FUNDS_FIELD_NUMBER: _ClassVar[int]
    funds: _containers.RepeatedCompositeFieldContainer[Fund]
    def __init__(self, funds: _Optional[_Iterable[_Union[Fund, _Mapping]]] = ...) -> None: ...

class ListOrderEventsRequest(_message.Message):
    __slots__ = ("order_ref_no",)
    ORDER_REF_NO_FIELD_NUMBER: _ClassVar[int]
    order_ref_no: str
    def __init__(self, order_ref_no: _Optional[str] = ...) -> None: ...

class ListOrderEventsResponse(_message.Message):
    __slots__ = ("events",)
    EVENTS_FIELD_NUMBER: _ClassVar[int]
    events: _containers.RepeatedCompositeFieldContainer[WatchOrderResponse]
    def __init__(self, events: _Optional[_Iterable[_Union[WatchOrderResponse, _Mapping]]] = ...) -> None: ...
