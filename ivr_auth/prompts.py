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
    # voice: "Hello. To listen to it, press 1." (any key will do)
    "press_to_hear": {"en": ["sound:hello", "sound:to-listen-to-it", "sound:vm-press", "sound:digits/1"]},
    # voice: "Your password is", before the digits
    "code_is": {"en": ["sound:your", "sound:vm-password", "sound:is"]},
    # voice: "To listen to it, press 1."
    "press_1_to_repeat": {"en": ["sound:to-listen-to-it", "sound:vm-press", "sound:digits/1"]},
    # inbound, no pending request for this caller: "I'm sorry, that number is incorrect. Goodbye."
    "not_registered": {"en": ["sound:privacy-incorrect", "sound:vm-goodbye"]},
    # inbound, caller ID withheld: "The party you are calling does not accept
    # calls from unidentified callers." then "Goodbye."
    "caller_id_withheld": {"en": ["sound:privacy-unident", "sound:vm-goodbye"]},
}
# Between the two readings of a code.
READING_GAP = "sound:silence/1"
FALLBACK_LANGUAGE = "en"


def media(name: str, language: str) -> list[str]:
    try:
        by_language = PROMPTS[name]
    except KeyError:
        raise errors.IvrAuthError(f"no prompt named {name!r}") from None
    return list(by_language.get(language) or by_language[FALLBACK_LANGUAGE])


def read_code(code: str, language: str, *, times: int = 2) -> list[str]:
    """The read-out of a code: "your code is", then the digits one by one,
    ``times`` over with a pause between."""
    if not code or any(c not in "0123456789" for c in code):
        raise errors.IvrAuthError("a code to read out must be digits 0-9")
    readings: list[str] = []
    for n in range(times):
        if n:
            readings.append(READING_GAP)
        readings.append(f"digits:{code}")
    return [*media("code_is", language), *readings]


def playback_language(language: str) -> str:
    """The ``lang`` given to Asterisk for ``sound:`` URIs of this table."""
    return language if all(language in p for p in PROMPTS.values()) else FALLBACK_LANGUAGE
