"""What a live run asks for (`RunSpec.live`): which book its orders go to, which feed
its bars come from, how long a decision may take. Its own module, like
core.risk_limits, so that core.spec can name it.

A live run plays the session of its `date` as it happens: today's while it is open, else
the next one (core.calendar.live_session). Its market orders fill, on the sim book, at
the close of the bar they were decided on (the last price known when they are sent:
the next bar's open is in the future); on the Alpaca paper book at the broker's prices,
each kept beside that rule's price, so the result reports the slippage.
"""

from __future__ import annotations

from enum import StrEnum

from pydantic import BaseModel, ConfigDict, Field

DEFAULT_DECISION_DEADLINE = 45.0


class Broker(StrEnum):
    SIM = "sim"  # tickrun's own fill rules on the live bars: no account needed
    ALPACA_PAPER = "alpaca_paper"  # Alpaca's paper trading API, the user's paper keys


class AlpacaFeed(StrEnum):
    IEX = "iex"  # free plans: IEX's trades only
    SIP = "sip"  # every US exchange: a paid plan


class LiveOptions(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    broker: Broker = Field(
        default=Broker.SIM,
        description="sim: tickrun's fill rules on the live bars; alpaca_paper: every "
                    "order goes to the user's Alpaca paper account")
    feed: AlpacaFeed = Field(
        default=AlpacaFeed.IEX,
        description="Alpaca's bar feed (data: alpaca): iex (free plans) or sip")
    decision_deadline_seconds: float = Field(
        default=DEFAULT_DECISION_DEADLINE, ge=1, le=600,
        description="A decision not done this long after its bar closed is recorded as "
                    "missed with the reason, and never traded late")
    flatten_on_stop: bool = Field(
        default=False, strict=True,
        description="On a stop (and stop-all), close the run's positions after its open "
                    "orders are cancelled; the result says what was left open")
