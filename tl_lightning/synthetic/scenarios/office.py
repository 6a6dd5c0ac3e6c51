"""Scenarios of the synthetic generator, part 2: calendar, to-do list, files, maths and messaging.

How a scenario works is described in :mod:`tl_lightning.synthetic.scenarios.base`. ``SCENARIOS``
lists them in a fixed order: the generator draws by index, so the order is part of its output.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from tl_lightning.synthetic.scenarios.base import scenario

if TYPE_CHECKING:
    from tl_lightning.synthetic.scenario_run import ScenarioRun

__all__ = ["SCENARIOS"]


# ----------------------------------------------------------------------------------- calendar
@scenario("create_event")
def create_event(ep: ScenarioRun) -> None:
    title, date, time = ep.pick("event"), ep.pick("future_date"), ep.pick("time")
    args: dict[str, Any] = {"title": title, "date": date, "start_time": time}
    extra = ""
    if ep.chance(0.4):
        args["duration_minutes"] = ep.rng.choice([30, 45, 90, 120])
        extra += f" It lasts {args['duration_minutes']} minutes."
    if ep.chance(0.3):
        args["location"] = ep.pick("location")
        extra += f" Location: {args['location']}."
    ep.ask([f"Add '{title}' to my calendar on {date} at {time}.", f"Schedule {title} for {date} at {time}."], suffix=extra)
    r = ep.call("create_event", **args)
    ep.finish(f"Added '{title}' on {date} at {time} ({r['duration_minutes']} minutes) as event {r['event_id']}.")
    ep.expect_state("calendar", "events", {"title": title, "date": date, "start_time": time})


def _seed_events(ep: ScenarioRun, date: str) -> list[dict[str, Any]]:
    titles = ep.rng.sample(ep.pool("event"), 3)
    times = sorted(ep.rng.sample(ep.pool("time"), 3))
    events = [{"event_id": f"EV-{i + 1}", "title": t, "date": date, "start_time": tm, "duration_minutes": 60, "location": None}
              for i, (t, tm) in enumerate(zip(titles, times, strict=True))]
    ep.setup("calendar", {"events": events, "next_id": len(events) + 1})
    return events


@scenario("list_events", "delete_event")
def cancel_event(ep: ScenarioRun) -> None:
    date = ep.pick("future_date")
    target = ep.rng.choice(_seed_events(ep, date))
    ep.ask([f"Remove the '{target['title']}' event from my calendar on {date}.", f"Cancel my {target['title']} on {date}."])
    r = ep.call("list_events", date=date)
    event = next(e for e in r["events"] if e["title"] == target["title"])
    ep.call("delete_event", event_id=event["event_id"])
    ep.finish(f"Deleted '{target['title']}' ({event['event_id']}) at {event['start_time']} on {date}.")
    ep.expect_absent("calendar", "events", {"title": target["title"]})


@scenario("list_events")
def agenda(ep: ScenarioRun) -> None:
    date = ep.pick("future_date")
    _seed_events(ep, date)
    ep.ask([f"What is on my calendar on {date}?", f"Show my agenda for {date}."])
    r = ep.call("list_events", date=date)
    ep.finish(f"On {date} you have: " + "; ".join(f"{e['start_time']} {e['title']}" for e in r["events"]) + ".")
    ep.expect_answer(*(e["title"] for e in r["events"]))


@scenario("get_day_of_week")
def day_of_week(ep: ScenarioRun) -> None:
    date = ep.pick(ep.rng.choice(["future_date", "past_date"]))
    ep.ask([f"What day of the week is {date}?", f"Which weekday falls on {date}?"])
    r = ep.call("get_day_of_week", date=date)
    ep.finish(f"{date} is a {r['day_of_week']}.")
    ep.expect_answer(r["day_of_week"])


@scenario("count_days_between")
def days_between(ep: ScenarioRun) -> None:
    a, b = sorted([ep.pick("past_date"), ep.pick("future_date")])
    ep.ask([f"How many days are there from {a} to {b}?", f"Count the days between {a} and {b}."])
    r = ep.call("count_days_between", start_date=a, end_date=b)
    ep.finish(f"There are {r['days']} days from {a} to {b}.")
    ep.expect_answer(str(r["days"]))


# --------------------------------------------------------------------------------------- todo
def _seed_tasks(ep: ScenarioRun, n: int = 3) -> list[dict[str, Any]]:
    titles = ep.rng.sample(ep.pool("task"), n)
    tasks = [{"task_id": i + 1, "title": t, "due_date": None, "priority": ep.rng.choice(["low", "medium", "high"]), "done": False}
             for i, t in enumerate(titles)]
    ep.setup("todo", {"tasks": tasks, "next_id": n + 1})
    return tasks


@scenario("add_task")
def add_task(ep: ScenarioRun) -> None:
    title = ep.pick("task")
    args: dict[str, Any] = {"title": title}
    extra = ""
    if ep.chance(0.5):
        args["due_date"] = ep.pick("future_date")
        extra += f" It is due on {args['due_date']}."
    if ep.chance(0.4):
        args["priority"] = ep.rng.choice(["low", "high"])
        extra += f" Priority {args['priority']}."
    ep.ask([f"Add '{title}' to my to-do list.", f"Remind me to {title}: put it on my list."], suffix=extra)
    r = ep.call("add_task", **args)
    ep.finish(f"Added task {r['task_id']}: '{title}' ({r['priority']} priority" + (f", due {r['due_date']})." if r["due_date"] else ")."))
    ep.expect_state("todo", "tasks", {"title": title, "priority": args.get("priority", "medium")})


@scenario("list_tasks", "complete_task")
def complete_task(ep: ScenarioRun) -> None:
    target = ep.rng.choice(_seed_tasks(ep))
    ep.ask([f"Mark '{target['title']}' as done.", f"I finished the task '{target['title']}'. Please check it off."])
    r = ep.call("list_tasks")
    tid = next(t["task_id"] for t in r["tasks"] if t["title"] == target["title"])
    ep.call("complete_task", task_id=tid)
    ep.finish(f"Task {tid} '{target['title']}' is marked as done.")
    ep.expect_state("todo", "tasks", {"task_id": tid, "done": True})


@scenario("list_tasks", "delete_task")
def delete_task(ep: ScenarioRun) -> None:
    target = ep.rng.choice(_seed_tasks(ep))
    ep.ask([f"Delete '{target['title']}' from my to-do list.", f"Remove the task '{target['title']}'."])
    r = ep.call("list_tasks", status="all")
    tid = next(t["task_id"] for t in r["tasks"] if t["title"] == target["title"])
    ep.call("delete_task", task_id=tid)
    ep.finish(f"Deleted task {tid} '{target['title']}'.")
    ep.expect_absent("todo", "tasks", {"title": target["title"]})


@scenario("list_tasks", "update_task_priority")
def reprioritize(ep: ScenarioRun) -> None:
    tasks = _seed_tasks(ep)
    target = ep.rng.choice(tasks)
    new = ep.rng.choice([p for p in ("low", "medium", "high") if p != target["priority"]])
    ep.ask([f"Set the priority of '{target['title']}' to {new}.", f"Make '{target['title']}' {new} priority."])
    r = ep.call("list_tasks")
    tid = next(t["task_id"] for t in r["tasks"] if t["title"] == target["title"])
    ep.call("update_task_priority", task_id=tid, priority=new)
    ep.finish(f"Task {tid} '{target['title']}' now has {new} priority.")
    ep.expect_state("todo", "tasks", {"task_id": tid, "priority": new})


@scenario("list_tasks", "complete_task", "add_task", "list_tasks")
def follow_up(ep: ScenarioRun) -> None:
    tasks = _seed_tasks(ep)
    target = ep.rng.choice(tasks)
    new = next(t for t in ep.pool("task") if t not in {x["title"] for x in tasks})
    ep.ask([f"I'm done with '{target['title']}'. Check it off, add '{new}' and show me what is still open.",
            f"Complete '{target['title']}', then add a task '{new}' and list my open tasks."])
    r = ep.call("list_tasks")
    tid = next(t["task_id"] for t in r["tasks"] if t["title"] == target["title"])
    ep.call("complete_task", task_id=tid)
    ep.call("add_task", title=new)
    left = ep.call("list_tasks")
    ep.finish(f"Done: '{target['title']}'. Added '{new}'. Open tasks: " + ", ".join(t["title"] for t in left["tasks"]) + ".")
    ep.expect_state("todo", "tasks", {"task_id": tid, "done": True})
    ep.expect_state("todo", "tasks", {"title": new, "done": False})


# -------------------------------------------------------------------------------------- files
def _seed_files(ep: ScenarioRun) -> dict[str, str]:
    paths = ep.rng.sample(ep.pool("file"), 2)
    files = {p: ep.pick("text") for p in paths}
    ep.setup("files", {"files": files})
    return files


@scenario("write_file")
def write_note(ep: ScenarioRun) -> None:
    path, text = ep.pick("file"), ep.pick("text")
    ep.ask([f"Save the note '{text}' to {path}.", f"Write '{text}' into the file {path}."])
    r = ep.call("write_file", path=path, content=text)
    ep.finish(f"Saved {r['size']} characters to {r['path']}.")
    ep.expect_state("files", "files", {path: text})


@scenario("read_file")
def read_note(ep: ScenarioRun) -> None:
    path = ep.rng.choice(sorted(_seed_files(ep)))
    ep.ask([f"What does {path} say?", f"Read {path} for me."])
    r = ep.call("read_file", path=path)
    ep.finish(f"{path} says: {r['content']}")
    ep.expect_answer(r["content"])


@scenario("append_to_file", "read_file")
def append_note(ep: ScenarioRun) -> None:
    path = ep.rng.choice(sorted(_seed_files(ep)))
    text = " " + ep.pick("text")
    ep.ask([f"Append '{text.strip()}' to {path} and show me the result.", f"Add the line '{text.strip()}' at the end of {path}, then read it back."])
    ep.call("append_to_file", path=path, content=text)
    r = ep.call("read_file", path=path)
    ep.finish(f"{path} now reads: {r['content']}")
    ep.expect_answer(text.strip())


@scenario("list_files", "delete_file")
def clean_folder(ep: ScenarioRun) -> None:
    files = _seed_files(ep)
    path = ep.rng.choice(sorted(files))
    folder = path.rsplit("/", 1)[0]
    name = path.rsplit("/", 1)[1]
    ep.ask([f"Delete the file called {name} in {folder}.", f"Find {name} under {folder} and remove it."])
    r = ep.call("list_files", directory=folder)
    match = next(p for p in r["files"] if p.endswith("/" + name))
    ep.call("delete_file", path=match)
    ep.finish(f"Deleted {match}.")
    ep.expect_absent("files", "files", {match: files[path]})


@scenario("read_file", "search_contacts", "send_email")
def email_file(ep: ScenarioRun) -> None:
    path = ep.rng.choice(sorted(_seed_files(ep)))
    who = ep.pick("contact")
    ep.ask([f"Email the contents of {path} to {who}.", f"Send {who} an email with what is in {path}."])
    f = ep.call("read_file", path=path)
    c = ep.call("search_contacts", query=who)["contacts"][0]
    ep.call("send_email", to=c["email"], subject=path.rsplit("/", 1)[1], body=f["content"])
    ep.finish(f"Emailed the contents of {path} to {c['name']} ({c['email']}).")
    ep.expect_state("messaging", "outbox", {"to": c["email"], "body": f["content"]})


# --------------------------------------------------------------------------------------- math
@scenario("calculate_mean")
def mean(ep: ScenarioRun) -> None:
    nums = ep.pick("numbers")
    text = ", ".join(str(n) for n in nums)
    ep.ask([f"What is the average of {text}?", f"Compute the mean of these numbers: {text}."])
    r = ep.call("calculate_mean", numbers=list(nums))
    ep.finish(f"The mean is {r['mean']}.")
    ep.expect_answer(str(r["mean"]))


@scenario("calculate_percentage")
def percentage(ep: ScenarioRun) -> None:
    whole = ep.pick("amount")
    part = ep.pick("unit_value")
    ep.ask([f"What percentage of {whole} is {part}?", f"{part} out of {whole} is what percent?"])
    r = ep.call("calculate_percentage", part=part, whole=whole)
    ep.finish(f"{part} is {r['percentage']}% of {whole}.")
    ep.expect_answer(str(r["percentage"]))


@scenario("calculate_compound_interest")
def interest(ep: ScenarioRun) -> None:
    p, rate, years = ep.pick("amount") * 10, ep.pick("rate"), ep.pick("years")
    args: dict[str, Any] = {"principal": p, "rate_percent": rate, "years": years}
    how = ""
    if ep.chance(0.3):
        args["compounds_per_year"] = 1
        how = " compounded yearly"
    ep.ask([f"If I deposit {p} at {rate}% a year{how}, how much will I have after {years} years?",
            f"What does {p} grow to in {years} years at {rate}% interest{how}?"])
    r = ep.call("calculate_compound_interest", **args)
    ep.finish(f"After {years} years you will have {r['balance']} ({r['interest']} in interest).")
    ep.expect_answer(str(r["balance"]))


@scenario("calculate_tip")
def tip(ep: ScenarioRun) -> None:
    bill = ep.pick("amount")
    args: dict[str, Any] = {"bill": bill}
    extra = ""
    if ep.chance(0.6):
        args["percent"] = ep.pick("percent")
        extra += f" with a {args['percent']}% tip"
    if ep.chance(0.5):
        args["people"] = ep.pick("small")
        extra += f" split between {args['people']} people"
    ep.ask([f"Our bill is {bill}. How much do we pay{extra}?", f"Work out the tip on a {bill} bill{extra}."])
    r = ep.call("calculate_tip", **args)
    ep.finish(f"The tip is {r['tip']}, the total {r['total']}, which is {r['per_person']} per person.")
    ep.expect_answer(str(r["total"]))


# ---------------------------------------------------------------------------------- messaging
@scenario("search_contacts", "send_email")
def email_contact(ep: ScenarioRun) -> None:
    who, text = ep.pick("contact"), ep.pick("text")
    ep.ask([f"Email {who} with the subject 'Reminder' saying '{text}'.", f"Send an email to {who}: subject 'Reminder', message '{text}'."])
    c = ep.call("search_contacts", query=who)["contacts"][0]
    r = ep.call("send_email", to=c["email"], subject="Reminder", body=text)
    ep.finish(f"Sent the email to {c['name']} at {c['email']} ({r['message_id']}).")
    ep.expect_state("messaging", "outbox", {"to": c["email"], "subject": "Reminder", "body": text})


@scenario("search_contacts", "send_sms")
def sms_contact(ep: ScenarioRun) -> None:
    who, text = ep.pick("contact"), ep.pick("text")
    ep.ask([f"Text {who}: '{text}'.", f"Send {who} a text message saying '{text}'."])
    c = ep.call("search_contacts", query=who)["contacts"][0]
    ep.call("send_sms", phone=c["phone"], text=text)
    ep.finish(f"Texted {c['name']} at {c['phone']}.")
    ep.expect_state("messaging", "outbox", {"to": c["phone"], "body": text})


@scenario("search_contacts")
def contact_lookup(ep: ScenarioRun) -> None:
    who = ep.pick("contact")
    ep.ask([f"What is {who}'s phone number?", f"Look up {who}'s contact details."])
    c = ep.call("search_contacts", query=who)["contacts"][0]
    ep.finish(f"{c['name']}: phone {c['phone']}, email {c['email']}.")
    ep.expect_answer(c["phone"])


SCENARIOS = [
    create_event, cancel_event, agenda, day_of_week, days_between, add_task, complete_task, delete_task, reprioritize,
    follow_up, write_note, read_note, append_note, clean_folder, email_file, mean, percentage, interest, tip,
    email_contact, sms_contact, contact_lookup,
]
