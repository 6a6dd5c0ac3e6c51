"""The shipped toolkits: deterministic, offline, one module per toolkit.

Tool names form deliberate prefix-sharing families (``get_weather_forecast`` / ``get_weather_history``
/ ``get_weather_alerts``, ``search_flights`` / ``search_hotels`` / ``search_restaurants`` /
``search_contacts``, ``convert_currency`` / ``convert_units`` / ``convert_temperature`` /
``convert_timezone``, ``book_*``, ``calculate_*``, ``list_*``, ``delete_*``), so that tool selection
hinges on one or two tokens, which is what PKT targets.
"""

from tl_lightning.tools.toolkits.calendar_events import CalendarToolkit
from tl_lightning.tools.toolkits.files import FilesToolkit
from tl_lightning.tools.toolkits.finance import FinanceToolkit
from tl_lightning.tools.toolkits.math_tools import MathToolkit
from tl_lightning.tools.toolkits.messaging import MessagingToolkit
from tl_lightning.tools.toolkits.todo import TodoToolkit
from tl_lightning.tools.toolkits.travel import TravelToolkit
from tl_lightning.tools.toolkits.units import UnitsToolkit
from tl_lightning.tools.toolkits.weather import WeatherToolkit

#: Every shipped toolkit class, in a fixed order.
TOOLKITS = (
    WeatherToolkit,
    TravelToolkit,
    FinanceToolkit,
    UnitsToolkit,
    CalendarToolkit,
    TodoToolkit,
    FilesToolkit,
    MathToolkit,
    MessagingToolkit,
)

__all__ = [
    "TOOLKITS",
    "CalendarToolkit",
    "FilesToolkit",
    "FinanceToolkit",
    "MathToolkit",
    "MessagingToolkit",
    "TodoToolkit",
    "TravelToolkit",
    "UnitsToolkit",
    "WeatherToolkit",
]
