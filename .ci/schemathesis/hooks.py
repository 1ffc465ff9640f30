"""Schemathesis hooks for the admin API's run (.ci/schemathesis.sh).

A consent's recipient must be the channel's kind of address (an email address for `email`, an
E.164 number for `sms` and `whatsapp`): generated bodies that break it are dropped too (the
server answers them 422 on `recipient`, as the document says).

One rule of the envelope spans two fields and so cannot be said in JSON Schema: `expires_at`
must be later than `not_before`. Generated bodies that break it are dropped (the server answers
them 422, as documented in docs/envelope.md). `filter_case` runs in every phase.
"""

import re

import schemathesis


_TIMESTAMP = re.compile(
    r"^([0-9]{4})-([0-9]{2})-([0-9]{2})T([0-9]{2}):([0-9]{2}):([0-9]{2})(\.[0-9]+)?(Z|([+-])([0-9]{2}):([0-9]{2}))$"
)


def _days_from_civil(year, month, day):
    """Days since 1970-01-01 in the proleptic Gregorian calendar, years 0000 to 9999 alike."""
    year -= month <= 2
    era = year // 400
    year_of_era = year - era * 400
    day_of_year = (153 * (month + (-3 if month > 2 else 9)) + 2) // 5 + day - 1
    day_of_era = year_of_era * 365 + year_of_era // 4 - year_of_era // 100 + day_of_year
    return era * 146097 + day_of_era - 719468


def _parse(value):
    """An RFC 3339 timestamp as (UTC seconds, fraction), or None."""
    match = _TIMESTAMP.match(value) if isinstance(value, str) else None
    if match is None:
        return None
    year, month, day, hour, minute, second = (int(match.group(index)) for index in range(1, 7))
    offset = 0
    if match.group(8) != "Z":
        offset = (int(match.group(10)) * 60 + int(match.group(11))) * 60
        offset = -offset if match.group(9) == "-" else offset
    seconds = _days_from_civil(year, month, day) * 86400 + hour * 3600 + minute * 60 + second - offset
    return seconds, float(match.group(7) or 0)


def _times_in_order(message):
    if not isinstance(message, dict):
        return True
    not_before, expires_at = _parse(message.get("not_before")), _parse(message.get("expires_at"))
    return not_before is None or expires_at is None or expires_at > not_before


@schemathesis.hook
def filter_case(context, case):
    body = case.body
    if not isinstance(body, dict):
        return True
    if "channel" in body and "recipient" in body:
        recipient, channel = body.get("recipient"), body.get("channel")
        if isinstance(recipient, str) and isinstance(channel, str):
            return ("@" in recipient) == (channel == "email")
    messages = body.get("messages")
    if isinstance(messages, list):
        return all(_times_in_order(message) for message in messages)
    return _times_in_order(body)
