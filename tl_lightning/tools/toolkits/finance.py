"""Currency conversion at fixed rates and stock prices from a fixed table."""

from __future__ import annotations

import datetime as dt

from tl_lightning.tools.toolkit import ToolError, Toolkit, tool
from tl_lightning.tools.toolkits._common import TODAY, number

#: Units of a currency per 1 USD (fixed; the sandbox has no market).
RATES = {
    "USD": 1.0, "EUR": 0.92, "GBP": 0.79, "JPY": 150.0, "CHF": 0.88, "CAD": 1.36, "AUD": 1.52, "CNY": 7.2,
    "INR": 83.0, "MXN": 17.0, "SEK": 10.5, "NOK": 10.6, "PLN": 4.0, "CZK": 23.0, "SGD": 1.34, "NZD": 1.64,
    "KRW": 1330.0, "ZAR": 18.5, "TRY": 32.0, "AED": 3.67, "THB": 36.0, "BRL": 5.0, "EGP": 47.0, "KES": 130.0,
    "PEN": 3.7, "CLP": 930.0,
}
SYMBOLS = ("AAPL", "MSFT", "GOOG", "AMZN", "TSLA", "NVDA", "META", "NFLX", "IBM", "INTC", "ORCL", "SAP", "SONY", "ADBE", "UBER")


def _currency(code: str) -> str:
    c = code.strip().upper()
    if c not in RATES:
        raise ToolError(f"Unknown currency '{code}'")
    return c


def rate(base: str, target: str) -> float:
    return round(RATES[target] / RATES[base], 4)


def _price(symbol: str, day: dt.date) -> float:
    return number(400, 4000, "stock", symbol, day.isoformat()) / 10


class FinanceToolkit(Toolkit):
    name = "finance"
    host = "api.finance.example"

    @tool
    def convert_currency(self, amount: float, from_currency: str, to_currency: str) -> dict:
        """Convert an amount of money between currencies.

        Args:
            amount: The amount to convert.
            from_currency: ISO code of the source currency, e.g. "USD".
            to_currency: ISO code of the target currency, e.g. "EUR".
        """
        if amount < 0:
            raise ValueError(f"amount must be non-negative, got {amount}")
        a, b = _currency(from_currency), _currency(to_currency)
        return {"amount": amount, "from": a, "to": b, "rate": rate(a, b), "result": round(amount * rate(a, b), 2)}

    @tool
    def get_exchange_rate(self, base: str, target: str) -> dict:
        """Get the exchange rate between two currencies.

        Args:
            base: ISO code of the base currency.
            target: ISO code of the quoted currency.
        """
        a, b = _currency(base), _currency(target)
        return {"base": a, "target": b, "rate": rate(a, b), "date": TODAY.isoformat()}

    @tool
    def get_stock_price(self, symbol: str) -> dict:
        """Get the latest closing price of a stock.

        Args:
            symbol: The ticker symbol, e.g. "AAPL".
        """
        s = symbol.strip().upper()
        if s not in SYMBOLS:
            raise ToolError(f"Unknown symbol '{symbol}'")
        day = TODAY - dt.timedelta(days=1)
        return {"symbol": s, "date": day.isoformat(), "close": _price(s, day), "currency": "USD"}

    @tool
    def get_stock_history(self, symbol: str, days: int = 5) -> dict:
        """Get the daily closing prices of a stock for the last days.

        Args:
            symbol: The ticker symbol.
            days: Number of past days, from 1 to 10.
        """
        if not 1 <= days <= 10:
            raise ValueError(f"days must be between 1 and 10, got {days}")
        s = symbol.strip().upper()
        if s not in SYMBOLS:
            raise ToolError(f"Unknown symbol '{symbol}'")
        closes = [{"date": (TODAY - dt.timedelta(days=i)).isoformat(), "close": _price(s, TODAY - dt.timedelta(days=i))}
                  for i in range(days, 0, -1)]
        return {"symbol": s, "history": closes}
