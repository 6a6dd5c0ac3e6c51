"""Scenarios of the synthetic generator, part 1: weather, travel, bookings, finance and conversions.

How a scenario works is described in :mod:`tl_lightning.synthetic.scenarios.base`. ``SCENARIOS``
lists them in a fixed order: the generator draws by index, so the order is part of its output.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from tl_lightning.synthetic.scenarios.base import scenario

if TYPE_CHECKING:
    from tl_lightning.synthetic.scenario_run import ScenarioRun

__all__ = ["SCENARIOS"]


def _deg(unit: str) -> str:
    return "°F" if unit == "fahrenheit" else "°C"


# ------------------------------------------------------------------------------------ weather
@scenario("get_weather_forecast")
def weather_forecast(ep: ScenarioRun) -> None:
    city = ep.pick("city")
    args: dict[str, Any] = {"city": city}
    when = "the next 3 days"
    if ep.chance(0.5):
        args["days"] = ep.pick("small")
        when = f"the next {args['days']} days"
    if ep.chance(0.3):
        args["unit"] = "fahrenheit"
    unit_text = " in Fahrenheit" if "unit" in args else ""
    ep.ask([f"What is the weather forecast for {city} for {when}{unit_text}?",
            f"Give me the forecast in {city} for {when}{unit_text}.",
            f"Will it be warm in {city} over {when}? Temperatures{unit_text} please."])
    r = ep.call("get_weather_forecast", **args)
    d = _deg(r["unit"])
    days = "; ".join(f"{f['date']}: {f['condition']}, {f['low']} to {f['high']}{d}" for f in r["forecast"])
    ep.finish(f"Forecast for {r['city']}: {days}.")
    ep.expect_answer(*(str(f["high"]) for f in r["forecast"]))


@scenario("get_weather_history")
def weather_history(ep: ScenarioRun) -> None:
    city, date = ep.pick("city"), ep.pick("past_date")
    args: dict[str, Any] = {"city": city, "date": date}
    if ep.chance(0.25):
        args["unit"] = "fahrenheit"
    ep.ask([f"What was the weather like in {city} on {date}?", f"How hot was it in {city} on {date}?",
            f"Did it rain in {city} on {date}?"], suffix=" Answer in Fahrenheit." if "unit" in args else "")
    r = ep.call("get_weather_history", **args)
    rain = f", with {r['rain_mm']} mm of rain" if r["rain_mm"] else ", with no rain"
    ep.finish(f"On {r['date']} {r['city']} was {r['condition']}: high {r['high']}{_deg(r['unit'])}, low {r['low']}{_deg(r['unit'])}{rain}.")
    ep.expect_answer(str(r["high"]))


@scenario("get_weather_alerts")
def weather_alerts(ep: ScenarioRun) -> None:
    city = ep.pick("city")
    args: dict[str, Any] = {"city": city}
    if ep.chance(0.4):
        args["severity"] = ep.rng.choice(["moderate", "severe"])
    level = f"{args['severity']} " if "severity" in args else ""
    ep.ask([f"Are there any {level}weather alerts for {city}?", f"Check {level}weather warnings in {city}."])
    r = ep.call("get_weather_alerts", **args)
    if r["alerts"]:
        alerts = "; ".join(f"{a['type']} ({a['severity']}) until {a['until']}" for a in r["alerts"])
        ep.finish(f"Active alerts for {r['city']}: {alerts}.")
        ep.expect_answer(*(a["type"] for a in r["alerts"]))
    else:
        ep.finish(f"There are no {level}weather alerts for {r['city']}.")
        ep.expect_answer("no", r["city"])


@scenario("get_air_quality")
def air_quality(ep: ScenarioRun) -> None:
    city = ep.pick("city")
    ep.ask([f"How is the air quality in {city} today?", f"What's the AQI in {city}?"])
    r = ep.call("get_air_quality", city=city)
    ep.finish(f"The air quality index in {r['city']} is {r['aqi']} ({r['level']}).")
    ep.expect_answer(str(r["aqi"]))


@scenario("get_weather_forecast", "convert_temperature")
def forecast_converted(ep: ScenarioRun) -> None:
    city = ep.pick("city")
    scale = ep.rng.choice(["kelvin", "fahrenheit"])
    ep.ask([f"What will tomorrow's high be in {city}, in {scale}?", f"Tell me tomorrow's maximum temperature in {city} in {scale}."])
    r = ep.call("get_weather_forecast", city=city, days=1)
    high = r["forecast"][0]["high"]
    c = ep.call("convert_temperature", value=high, from_scale="celsius", to_scale=scale)
    ep.finish(f"Tomorrow's high in {r['city']} is {high}°C, which is {c['result']} {scale}.")
    ep.expect_answer(str(c["result"]))


# ------------------------------------------------------------------------------------- travel
def _two_cities(ep: ScenarioRun) -> tuple[str, str]:
    a = ep.pick("city")
    b = ep.pick("city")
    while b == a:
        b = ep.pick("city")
    return a, b


@scenario("search_flights", "book_flight")
def flight_booking(ep: ScenarioRun) -> None:
    origin, dest = _two_cities(ep)
    date = ep.pick("future_date")
    args: dict[str, Any] = {"origin": origin, "destination": dest, "date": date}
    extra = ""
    if ep.chance(0.3) and ep.peek("search_flights", **args, max_stops=0)["flights"]:
        args["max_stops"] = 0
        extra = " I only want direct flights."
    if ep.chance(0.2):
        args["cabin"] = "business"
        extra += " Business class, please."
    passengers = ep.pick("small") if ep.chance(0.4) else 1
    who = f" for {passengers} people" if passengers > 1 else ""
    ep.ask([f"Book the cheapest flight from {origin} to {dest} on {date}{who}.",
            f"I need to fly from {origin} to {dest} on {date}. Please book the cheapest option{who}."], suffix=extra)
    r = ep.call("search_flights", **args)
    best = min(r["flights"], key=lambda f: (f["price"], f["flight_id"]))
    book_args: dict[str, Any] = {"flight_id": best["flight_id"]}
    if passengers > 1:
        book_args["passengers"] = passengers
    b = ep.call("book_flight", **book_args)
    ep.finish(f"Booked {best['airline']} flight {best['flight_id']} from {r['origin']} to {r['destination']} on {date}, "
              f"departing {best['departure']}, for {b['total_price']} USD. Booking id: {b['booking_id']}.")
    ep.expect_state("travel", "bookings", {"flight_id": best["flight_id"], "passengers": passengers, "status": "confirmed"})


@scenario("search_hotels", "book_hotel")
def hotel_booking(ep: ScenarioRun) -> None:
    city, date = ep.pick("city"), ep.pick("future_date")
    args: dict[str, Any] = {"city": city, "check_in": date}
    nights = ep.pick("small") if ep.chance(0.6) else 1
    if nights > 1:
        args["nights"] = nights
    ep.ask([f"Find a hotel in {city} from {date} for {nights} night{'s' * (nights > 1)} and book the best rated one.",
            f"Book me the hotel with the most stars in {city}, checking in on {date} for {nights} night{'s' * (nights > 1)}."])
    r = ep.call("search_hotels", **args)
    best = max(r["hotels"], key=lambda h: (h["stars"], -h["price_per_night"], h["hotel_id"]))
    b = ep.call("book_hotel", hotel_id=best["hotel_id"])
    ep.finish(f"Booked {best['name']} ({best['stars']} stars) in {r['city']} from {date} for {nights} night(s), "
              f"{b['total_price']} in total. Booking id: {b['booking_id']}.")
    ep.expect_state("travel", "bookings", {"hotel_id": best["hotel_id"], "status": "confirmed"})


@scenario("search_hotels")
def hotel_search(ep: ScenarioRun) -> None:
    city, date = ep.pick("city"), ep.pick("future_date")
    budget = ep.rng.choice([150, 200, 250, 300])
    ep.ask([f"Which hotels in {city} cost at most {budget} per night? I arrive on {date}.",
            f"List hotels in {city} under {budget} a night for a check-in on {date}."])
    r = ep.call("search_hotels", city=city, check_in=date, max_price=budget)
    if r["hotels"]:
        names = "; ".join(f"{h['name']} at {h['price_per_night']} per night" for h in r["hotels"])
        ep.finish(f"Hotels in {r['city']} within your budget: {names}.")
        ep.expect_answer(*(h["name"] for h in r["hotels"]))
    else:
        ep.finish(f"No hotel in {r['city']} costs {budget} or less per night.")
        ep.expect_answer("no", r["city"])


@scenario("search_restaurants", "book_restaurant")
def restaurant_booking(ep: ScenarioRun) -> None:
    city, date, time = ep.pick("city"), ep.pick("future_date"), ep.pick("time")
    party = ep.pick("small")
    args: dict[str, Any] = {"city": city}
    cuisine = ep.rng.choice(["italian", "japanese", "mexican", "indian", "french", "vegan"])
    if ep.peek("search_restaurants", city=city, cuisine=cuisine)["restaurants"]:
        args["cuisine"] = cuisine
    food = f"{cuisine} " if "cuisine" in args else ""
    ep.ask([f"Reserve a table for {party} at the best rated {food}restaurant in {city} on {date} at {time}.",
            f"Find the top {food}restaurant in {city} and book it for {party} people on {date} at {time}."])
    r = ep.call("search_restaurants", **args)
    best = max(r["restaurants"], key=lambda x: (x["rating"], x["restaurant_id"]))
    b = ep.call("book_restaurant", restaurant_id=best["restaurant_id"], date=date, time=time, party_size=party)
    ep.finish(f"Reserved a table for {party} at {best['name']} (rated {best['rating']}) on {date} at {time}. Booking id: {b['booking_id']}.")
    ep.expect_state("travel", "bookings", {"restaurant_id": best["restaurant_id"], "date": date, "time": time, "party_size": party})


@scenario("search_restaurants")
def restaurant_search(ep: ScenarioRun) -> None:
    city = ep.pick("city")
    rating = ep.rng.choice([4.0, 4.5])
    ep.ask([f"Which restaurants in {city} are rated at least {rating}?", f"Show me restaurants in {city} with a rating of {rating} or more."])
    r = ep.call("search_restaurants", city=city, min_rating=rating)
    if r["restaurants"]:
        ep.finish(f"Restaurants in {r['city']} rated {rating}+: " + "; ".join(f"{x['name']} ({x['cuisine']}, {x['rating']})" for x in r["restaurants"]) + ".")
        ep.expect_answer(*(x["name"] for x in r["restaurants"]))
    else:
        ep.finish(f"No restaurant in {r['city']} is rated {rating} or more.")
        ep.expect_answer("no", r["city"])


@scenario("search_flights", "book_flight", "create_event")
def flight_with_calendar(ep: ScenarioRun) -> None:
    origin, dest = _two_cities(ep)
    date = ep.pick("future_date")
    ep.ask([f"Book the cheapest flight from {origin} to {dest} on {date} and put it in my calendar.",
            f"Get me on the cheapest {origin} to {dest} flight on {date} and add the flight to my calendar."])
    r = ep.call("search_flights", origin=origin, destination=dest, date=date)
    best = min(r["flights"], key=lambda f: (f["price"], f["flight_id"]))
    b = ep.call("book_flight", flight_id=best["flight_id"])
    e = ep.call("create_event", title=f"Flight {best['flight_id']} to {r['destination']}", date=date, start_time=best["departure"])
    ep.finish(f"Booked flight {best['flight_id']} ({b['booking_id']}, {b['total_price']} USD) departing {best['departure']} on {date}, "
              f"and added it to your calendar as event {e['event_id']}.")
    ep.expect_state("travel", "bookings", {"flight_id": best["flight_id"], "status": "confirmed"})
    ep.expect_state("calendar", "events", {"date": date, "start_time": best["departure"]})


def _seed_bookings(ep: ScenarioRun) -> list[dict[str, Any]]:
    bookings = {}
    n = 101 + ep.rng.randrange(20)
    for k in range(ep.rng.randint(1, 3)):
        bid = f"BK-{n + k}"
        city = ep.pick("city")
        bookings[bid] = {"booking_id": bid, "status": "confirmed", "type": "hotel", "hotel_id": f"HT{ep.rng.randint(100, 999)}",
                         "hotel": "Park Inn", "city": city, "check_in": ep.pick("future_date"), "nights": 2, "guests": 1,
                         "total_price": 10 * ep.rng.randint(10, 60)}
    ep.setup("travel", {"offers": {}, "bookings": bookings, "next_booking": n + len(bookings)})
    return list(bookings.values())


@scenario("get_booking", "cancel_booking")
def booking_cancel(ep: ScenarioRun) -> None:
    target = ep.rng.choice(_seed_bookings(ep))
    bid = target["booking_id"]
    ep.ask([f"Check booking {bid} and cancel it.", f"What is booking {bid}? Please cancel it."])
    g = ep.call("get_booking", booking_id=bid)
    ep.call("cancel_booking", booking_id=bid)
    ep.finish(f"Booking {bid} was a {g['type']} booking at {g['hotel']} in {g['city']} on {g['check_in']}; it is now cancelled.")
    ep.expect_state("travel", "bookings", {"booking_id": bid, "status": "cancelled"})


@scenario("get_booking")
def booking_lookup(ep: ScenarioRun) -> None:
    target = ep.rng.choice(_seed_bookings(ep))
    bid = target["booking_id"]
    ep.ask([f"What are the details of booking {bid}?", f"When is my booking {bid}?"])
    g = ep.call("get_booking", booking_id=bid)
    ep.finish(f"Booking {bid}: {g['hotel']} in {g['city']}, check-in {g['check_in']} for {g['nights']} nights, status {g['status']}.")
    ep.expect_answer(g["check_in"])


# ------------------------------------------------------------------------------------ finance
@scenario("convert_currency")
def currency(ep: ScenarioRun) -> None:
    amount, a = ep.pick("amount"), ep.pick("currency")
    b = ep.pick("currency")
    while b == a:
        b = ep.pick("currency")
    ep.ask([f"How much is {amount} {a} in {b}?", f"Convert {amount} {a} to {b}.", f"I have {amount} {a}. What is that in {b}?"])
    r = ep.call("convert_currency", amount=amount, from_currency=a, to_currency=b)
    ep.finish(f"{amount} {a} is {r['result']} {b} (rate {r['rate']}).")
    ep.expect_answer(str(r["result"]))


@scenario("get_exchange_rate")
def exchange_rate(ep: ScenarioRun) -> None:
    a, b = ep.pick("currency"), ep.pick("currency")
    while b == a:
        b = ep.pick("currency")
    ep.ask([f"What is the exchange rate from {a} to {b}?", f"How many {b} do I get for one {a}?"])
    r = ep.call("get_exchange_rate", base=a, target=b)
    ep.finish(f"1 {a} = {r['rate']} {b}.")
    ep.expect_answer(str(r["rate"]))


@scenario("get_stock_price")
def stock_price(ep: ScenarioRun) -> None:
    s = ep.pick("symbol")
    ep.ask([f"What is the latest price of {s} stock?", f"How much does a share of {s} cost?"])
    r = ep.call("get_stock_price", symbol=s)
    ep.finish(f"{s} closed at {r['close']} USD on {r['date']}.")
    ep.expect_answer(str(r["close"]))


@scenario("get_stock_history", "calculate_mean")
def stock_average(ep: ScenarioRun) -> None:
    s, days = ep.pick("symbol"), ep.pick("small")
    ep.ask([f"What was the average closing price of {s} over the last {days} days?", f"Average {s}'s closes of the past {days} days."])
    r = ep.call("get_stock_history", symbol=s, days=days)
    m = ep.call("calculate_mean", numbers=[h["close"] for h in r["history"]])
    ep.finish(f"The average close of {s} over the last {days} days is {m['mean']} USD.")
    ep.expect_answer(str(m["mean"]))


@scenario("get_stock_price", "convert_currency")
def stock_in_currency(ep: ScenarioRun) -> None:
    s, cur = ep.pick("symbol"), ep.pick("currency")
    while cur == "USD":
        cur = ep.pick("currency")
    ep.ask([f"What is the price of {s} in {cur}?", f"How much is one {s} share worth in {cur}?"])
    r = ep.call("get_stock_price", symbol=s)
    c = ep.call("convert_currency", amount=r["close"], from_currency="USD", to_currency=cur)
    ep.finish(f"{s} closed at {r['close']} USD, which is {c['result']} {cur}.")
    ep.expect_answer(str(c["result"]))


# -------------------------------------------------------------------------------------- units
@scenario("convert_units")
def units(ep: ScenarioRun) -> None:
    (a, b), v = ep.pick("unit_pair"), ep.pick("unit_value")
    ep.ask([f"Convert {v} {a} to {b}.", f"How many {b} is {v} {a}?"])
    r = ep.call("convert_units", value=v, from_unit=a, to_unit=b)
    ep.finish(f"{v} {a} is {r['result']} {b}.")
    ep.expect_answer(str(r["result"]))


@scenario("convert_temperature")
def temperature(ep: ScenarioRun) -> None:
    (a, b), v = ep.pick("scale_pair"), ep.pick("temperature")
    ep.ask([f"Convert {v} degrees {a} to {b}.", f"What is {v} {a} in {b}?"])
    r = ep.call("convert_temperature", value=v, from_scale=a, to_scale=b)
    ep.finish(f"{v} {a} is {r['result']} {b}.")
    ep.expect_answer(str(r["result"]))


@scenario("convert_timezone")
def timezone(ep: ScenarioRun) -> None:
    (a, b), t = ep.pick("zone_pair"), ep.pick("time")
    ep.ask([f"When it is {t} {a}, what time is it in {b}?", f"Convert {t} from {a} to {b}."])
    r = ep.call("convert_timezone", time=t, from_zone=a, to_zone=b)
    shift = {0: "", 1: " (next day)", -1: " (previous day)"}[r["day_shift"]]
    ep.finish(f"{t} {a} is {r['result']} {b}{shift}.")
    ep.expect_answer(r["result"])


SCENARIOS = [
    weather_forecast, weather_history, weather_alerts, air_quality, forecast_converted, flight_booking, hotel_booking,
    hotel_search, restaurant_booking, restaurant_search, flight_with_calendar, booking_cancel, booking_lookup,
    currency, exchange_rate, stock_price, stock_average, stock_in_currency, units, temperature, timezone,
]
