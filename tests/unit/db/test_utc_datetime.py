"""Times are stored as naive UTC and read back as aware UTC; naive input is refused."""

from __future__ import annotations

import datetime as dt

import pytest
from sqlalchemy.dialects import mysql

from kubenova.db import models

DIALECT = mysql.dialect()
TYPE = models.UTCDateTime()


def test_aware_time_in_another_zone_is_stored_as_naive_utc():
    paris_summer = dt.timezone(dt.timedelta(hours=2))
    value = dt.datetime(2025, 6, 1, 14, 30, tzinfo=paris_summer)

    assert TYPE.process_bind_param(value, DIALECT) == dt.datetime(2025, 6, 1, 12, 30)


def test_naive_time_is_refused():
    with pytest.raises(ValueError, match="naive"):
        TYPE.process_bind_param(dt.datetime(2025, 6, 1, 12, 30), DIALECT)


def test_stored_time_is_read_back_as_aware_utc():
    value = TYPE.process_result_value(dt.datetime(2025, 6, 1, 12, 30, 0, 123456), DIALECT)

    assert value == dt.datetime(2025, 6, 1, 12, 30, 0, 123456, tzinfo=dt.UTC)
    assert value is not None
    assert value.utcoffset() == dt.timedelta(0)


def test_null_stays_null_both_ways():
    assert TYPE.process_bind_param(None, DIALECT) is None
    assert TYPE.process_result_value(None, DIALECT) is None


def test_mysql_column_keeps_microseconds():
    assert TYPE.load_dialect_impl(DIALECT).compile(dialect=DIALECT) == "DATETIME(6)"
