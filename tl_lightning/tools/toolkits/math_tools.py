"""Arithmetic helpers: means, percentages, compound interest and tips."""

from __future__ import annotations

from tl_lightning.tools.toolkit import Toolkit, tool


class MathToolkit(Toolkit):
    name = "math"
    host = "api.math.example"

    @tool
    def calculate_mean(self, numbers: list[float]) -> dict:
        """Calculate the mean of a list of numbers.

        Args:
            numbers: The numbers.
        """
        return {"count": len(numbers), "mean": round(sum(numbers) / len(numbers), 2)}

    @tool
    def calculate_percentage(self, part: float, whole: float) -> dict:
        """Calculate what percentage one number is of another.

        Args:
            part: The part.
            whole: The whole.
        """
        return {"part": part, "whole": whole, "percentage": round(100 * part / whole, 2)}

    @tool
    def calculate_compound_interest(self, principal: float, rate_percent: float, years: int, compounds_per_year: int = 12) -> dict:
        """Calculate the final balance of a deposit with compound interest.

        Args:
            principal: The initial deposit.
            rate_percent: Annual interest rate in percent.
            years: Number of years.
            compounds_per_year: How often interest is compounded per year.
        """
        if years < 0 or compounds_per_year < 1:
            raise ValueError("years must be >= 0 and compounds_per_year >= 1")
        balance = principal * (1 + rate_percent / 100 / compounds_per_year) ** (compounds_per_year * years)
        return {"principal": principal, "years": years, "balance": round(balance, 2), "interest": round(balance - principal, 2)}

    @tool
    def calculate_tip(self, bill: float, percent: float = 15.0, people: int = 1) -> dict:
        """Calculate the tip and each person's share of a bill.

        Args:
            bill: The bill amount.
            percent: Tip percentage.
            people: Number of people splitting the bill.
        """
        tip = bill * percent / 100
        return {"bill": bill, "tip": round(tip, 2), "total": round(bill + tip, 2), "per_person": round((bill + tip) / people, 2)}
