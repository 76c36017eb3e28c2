"""Every message the call flows play, by name and language.

For now both languages use Asterisk's English core sounds where one says the
right thing; the Japanese and English prompt set (its own issue) replaces
this table, and the flows only ever ask for a prompt by name.
"""

from __future__ import annotations

from ivr_auth import errors

# name -> language -> media URIs played in order
PROMPTS: dict[str, dict[str, list[str]]] = {
    # "Hello. Please enter your password followed by the pound key."
    "enter_code": {"en": ["sound:hello", "sound:agent-pass"]},
    # "Password incorrect. Please enter your password followed by the pound key."
    "wrong_code": {"en": ["sound:auth-incorrect"]},
    # "I'm sorry, I did not understand your response." then the request again
    "no_input": {"en": ["sound:vm-sorry", "sound:agent-pass"]},
    # "Thank you. Goodbye."
    "verified": {"en": ["sound:auth-thankyou", "sound:vm-goodbye"]},
    # "Login incorrect. Goodbye."
    "failed": {"en": ["sound:vm-incorrect", "sound:vm-goodbye"]},
    # "Goodbye."
    "goodbye": {"en": ["sound:vm-goodbye"]},
}
FALLBACK_LANGUAGE = "en"


def media(name: str, language: str) -> list[str]:
    try:
        by_language = PROMPTS[name]
    except KeyError:
        raise errors.IvrAuthError(f"no prompt named {name!r}") from None
    return list(by_language.get(language) or by_language[FALLBACK_LANGUAGE])


def playback_language(language: str) -> str:
    """The ``lang`` given to Asterisk for ``sound:`` URIs of this table."""
    return language if all(language in p for p in PROMPTS.values()) else FALLBACK_LANGUAGE
