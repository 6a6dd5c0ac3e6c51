"""Travel: flight, hotel and restaurant search over fixed tables, bookings kept in episode state.

Search results are remembered as offers in the state, so ``book_*`` accepts the ids a search returned
in this episode (as a real booking API does), and bookings can be looked up or cancelled.
"""

from __future__ import annotations

import datetime as dt
from typing import Any, Literal

from tl_lightning.tools.toolkit import ToolError, Toolkit, tool
from tl_lightning.tools.toolkits._common import canonical_city, number, parse_date, pick

AIRLINES = ("SkyJet", "AeroLink", "BlueWing", "NorthAir")
HOTEL_WORDS = ("Grand", "Harbor", "Park", "Royal", "Garden", "City", "Riverside", "Central")
HOTEL_KINDS = ("Hotel", "Inn", "Suites", "Lodge")
CUISINES = ("italian", "japanese", "mexican", "indian", "french", "vegan")
RESTAURANT_WORDS = ("Bella", "Sakura", "Casa", "Spice", "Le Petit", "Green", "Golden", "Blue")
RESTAURANT_KINDS = ("Kitchen", "Table", "Bistro", "House")


class TravelToolkit(Toolkit):
    name = "travel"
    host = "api.travel.example"

    def initial_state(self) -> dict[str, Any]:
        return {"offers": {}, "bookings": {}, "next_booking": 101}

    def _offer_id(self, prefix: str, *key: object) -> str:
        n = number(100, 999, prefix, *key)
        while f"{prefix}{n}" in self.state["offers"] and self.state["offers"][f"{prefix}{n}"]["key"] != list(map(str, key)):
            n = 100 + (n - 99) % 900
        return f"{prefix}{n}"

    def _remember(self, offer_id: str, key: tuple, offer: dict[str, Any]) -> None:
        self.state["offers"][offer_id] = {"key": list(map(str, key)), **offer}

    def _offer(self, offer_id: str, kind: str) -> dict[str, Any]:
        offer = self.state["offers"].get(offer_id)
        if offer is None or offer["kind"] != kind:
            raise ToolError(f"{kind.capitalize()} '{offer_id}' not found; search first")
        return offer

    def _book(self, record: dict[str, Any]) -> dict[str, Any]:
        booking_id = f"BK-{self.state['next_booking']}"
        self.state["next_booking"] += 1
        booking = {"booking_id": booking_id, "status": "confirmed", **record}
        self.state["bookings"][booking_id] = booking
        return booking

    @tool
    def search_flights(self, origin: str, destination: str, date: str, max_stops: int | None = None,
                       cabin: Literal["economy", "business"] = "economy") -> dict:
        """Search flights between two cities on a date.

        Args:
            origin: Departure city.
            destination: Arrival city.
            date: Departure date in YYYY-MM-DD format.
            max_stops: Maximum number of stops.
            cabin: Cabin class.
        """
        day = parse_date(date)
        a, b = canonical_city(origin), canonical_city(destination)
        if a == b:
            raise ToolError("Origin and destination must differ")
        flights = []
        for i in range(number(2, 4, "n-flights", a, b, date)):
            key = (a, b, day.isoformat(), i)
            stops = number(0, 2, "stops", *key)
            if max_stops is not None and stops > max_stops:
                continue
            price = number(8, 90, "price", *key) * 10 * (3 if cabin == "business" else 1)
            fid = self._offer_id("FL", *key)
            flight = {"flight_id": fid, "airline": pick(AIRLINES, "airline", *key),
                      "departure": f"{number(6, 21, 'hour', *key):02d}:{pick((0, 15, 30, 45), 'min', *key):02d}",
                      "stops": stops, "price": price, "cabin": cabin}
            self._remember(fid, key, {"kind": "flight", "origin": a, "destination": b, "date": day.isoformat(), **flight})
            flights.append(flight)
        return {"origin": a, "destination": b, "date": day.isoformat(), "flights": flights}

    @tool
    def search_hotels(self, city: str, check_in: str, nights: int = 1, max_price: float | None = None) -> dict:
        """Search hotels in a city.

        Args:
            city: The city name.
            check_in: Check-in date in YYYY-MM-DD format.
            nights: Number of nights, from 1 to 14.
            max_price: Maximum price per night.
        """
        day = parse_date(check_in)
        if not 1 <= nights <= 14:
            raise ValueError(f"nights must be between 1 and 14, got {nights}")
        name = canonical_city(city)
        hotels = []
        for i in range(number(2, 4, "n-hotels", name)):
            key = (name, i)
            price = number(6, 40, "night", *key) * 10
            if max_price is not None and price > max_price:
                continue
            hid = self._offer_id("HT", *key)
            hotel = {"hotel_id": hid, "name": f"{pick(HOTEL_WORDS, 'hw', *key)} {pick(HOTEL_KINDS, 'hk', *key)}",
                     "stars": number(2, 5, "stars", *key), "price_per_night": price, "total": price * nights}
            self._remember(hid, key, {"kind": "hotel", "city": name, "check_in": day.isoformat(), "nights": nights, **hotel})
            hotels.append(hotel)
        return {"city": name, "check_in": day.isoformat(), "nights": nights, "hotels": hotels}

    @tool
    def search_restaurants(self, city: str, cuisine: Literal["italian", "japanese", "mexican", "indian", "french", "vegan"] | None = None,
                           min_rating: float | None = None) -> dict:
        """Search restaurants in a city.

        Args:
            city: The city name.
            cuisine: Only restaurants of this cuisine.
            min_rating: Minimum rating, from 1.0 to 5.0.
        """
        name = canonical_city(city)
        found = []
        for i in range(6):
            key = (name, i)
            kind = pick(CUISINES, "cuisine", *key)
            rating = number(30, 49, "rating", *key) / 10
            if (cuisine is not None and kind != cuisine) or (min_rating is not None and rating < min_rating):
                continue
            rid = self._offer_id("RS", *key)
            rest = {"restaurant_id": rid, "name": f"{pick(RESTAURANT_WORDS, 'rw', *key)} {pick(RESTAURANT_KINDS, 'rk', *key)}",
                    "cuisine": kind, "rating": rating}
            self._remember(rid, key, {"kind": "restaurant", "city": name, **rest})
            found.append(rest)
        return {"city": name, "restaurants": found}

    @tool
    def book_flight(self, flight_id: str, passengers: int = 1) -> dict:
        """Book a flight found by search_flights.

        Args:
            flight_id: The flight id, e.g. "FL123".
            passengers: Number of passengers, from 1 to 9.
        """
        if not 1 <= passengers <= 9:
            raise ValueError(f"passengers must be between 1 and 9, got {passengers}")
        f = self._offer(flight_id, "flight")
        return self._book({"type": "flight", "flight_id": flight_id, "origin": f["origin"], "destination": f["destination"],
                           "date": f["date"], "passengers": passengers, "total_price": f["price"] * passengers})

    @tool
    def book_hotel(self, hotel_id: str, guests: int = 1) -> dict:
        """Book a hotel found by search_hotels, for the searched dates.

        Args:
            hotel_id: The hotel id, e.g. "HT123".
            guests: Number of guests, from 1 to 6.
        """
        if not 1 <= guests <= 6:
            raise ValueError(f"guests must be between 1 and 6, got {guests}")
        h = self._offer(hotel_id, "hotel")
        return self._book({"type": "hotel", "hotel_id": hotel_id, "hotel": h["name"], "city": h["city"],
                           "check_in": h["check_in"], "nights": h["nights"], "guests": guests, "total_price": h["total"]})

    @tool
    def book_restaurant(self, restaurant_id: str, date: str, time: str, party_size: int = 2) -> dict:
        """Reserve a table at a restaurant found by search_restaurants.

        Args:
            restaurant_id: The restaurant id, e.g. "RS123".
            date: Date in YYYY-MM-DD format.
            time: Time in HH:MM format.
            party_size: Number of people, from 1 to 12.
        """
        day = parse_date(date)
        at = dt.time.fromisoformat(time)
        if not 1 <= party_size <= 12:
            raise ValueError(f"party_size must be between 1 and 12, got {party_size}")
        r = self._offer(restaurant_id, "restaurant")
        return self._book({"type": "restaurant", "restaurant_id": restaurant_id, "restaurant": r["name"], "city": r["city"],
                           "date": day.isoformat(), "time": at.strftime("%H:%M"), "party_size": party_size})

    @tool
    def get_booking(self, booking_id: str) -> dict:
        """Get the details of a booking.

        Args:
            booking_id: The booking id, e.g. "BK-101".
        """
        if booking_id not in self.state["bookings"]:
            raise ToolError(f"Booking '{booking_id}' not found")
        return dict(self.state["bookings"][booking_id])

    @tool
    def cancel_booking(self, booking_id: str) -> dict:
        """Cancel a booking.

        Args:
            booking_id: The booking id, e.g. "BK-101".
        """
        booking = self.state["bookings"].get(booking_id)
        if booking is None:
            raise ToolError(f"Booking '{booking_id}' not found")
        if booking["status"] == "cancelled":
            raise ToolError(f"Booking '{booking_id}' is already cancelled")
        booking["status"] = "cancelled"
        return {"booking_id": booking_id, "status": "cancelled"}
