"""Contacts and outgoing messages, kept in episode state (nothing is sent anywhere)."""

from __future__ import annotations

from typing import Any

from tl_lightning.tools.toolkit import ToolError, Toolkit, tool

CONTACTS = {
    "C-1": {"name": "Alice Martin", "email": "alice@example.com", "phone": "555-0101"},
    "C-2": {"name": "Bob Chen", "email": "bob@example.com", "phone": "555-0102"},
    "C-3": {"name": "Carla Diaz", "email": "carla@example.com", "phone": "555-0103"},
    "C-4": {"name": "David Okafor", "email": "david@example.com", "phone": "555-0104"},
    "C-5": {"name": "Emma Rossi", "email": "emma@example.com", "phone": "555-0105"},
    "C-6": {"name": "Farid Haddad", "email": "farid@example.com", "phone": "555-0106"},
    "C-7": {"name": "Grace Kim", "email": "grace@example.com", "phone": "555-0107"},
    "C-8": {"name": "Hugo Laurent", "email": "hugo@example.com", "phone": "555-0108"},
    "C-9": {"name": "Ines Silva", "email": "ines@example.com", "phone": "555-0109"},
    "C-10": {"name": "Jonas Berg", "email": "jonas@example.com", "phone": "555-0110"},
}


class MessagingToolkit(Toolkit):
    name = "messaging"
    host = "api.mail.example"

    def initial_state(self) -> dict[str, Any]:
        return {"outbox": []}

    @tool
    def search_contacts(self, query: str) -> dict:
        """Search the address book by name.

        Args:
            query: A name or part of a name.
        """
        q = query.strip().lower()
        if not q:
            raise ValueError("query must not be empty")
        found = [{"contact_id": cid, **c} for cid, c in CONTACTS.items() if q in c["name"].lower()]
        return {"query": query, "contacts": found}

    @tool
    def send_email(self, to: str, subject: str, body: str) -> dict:
        """Send an email.

        Args:
            to: Recipient email address.
            subject: The subject line.
            body: The message text.
        """
        if "@" not in to:
            raise ValueError(f"invalid email address: {to!r}")
        msg = {"message_id": f"M-{len(self.state['outbox']) + 1}", "channel": "email", "to": to, "subject": subject, "body": body}
        self.state["outbox"].append(msg)
        return {"message_id": msg["message_id"], "status": "sent"}

    @tool
    def send_sms(self, phone: str, text: str) -> dict:
        """Send a text message to a phone number.

        Args:
            phone: The phone number, e.g. "555-0101".
            text: The message text, at most 160 characters.
        """
        if len(text) > 160:
            raise ValueError(f"text is {len(text)} characters; an SMS holds at most 160")
        if not any(c["phone"] == phone for c in CONTACTS.values()):
            raise ToolError(f"Phone number '{phone}' is not reachable")
        msg = {"message_id": f"M-{len(self.state['outbox']) + 1}", "channel": "sms", "to": phone, "body": text}
        self.state["outbox"].append(msg)
        return {"message_id": msg["message_id"], "status": "sent"}
