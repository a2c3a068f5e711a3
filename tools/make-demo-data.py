#!/usr/bin/env python3
"""Writes berth's small demo dataset: customer-support intents.

Sentences are composed from hand-written templates and slot fillers, with
varied phrasing, politeness, word order, casing and an occasional typo, so the
task is learnable but not trivial: several intents share vocabulary (cities in
flights and weather, "card" in banking intents, "cancel" in bookings and
alarms).

Output, with a header `text<TAB>label`:
  demo/intents-train.tsv  (TRAIN_PER_INTENT rows per intent)
  demo/intents-dev.tsv    (DEV_PER_INTENT rows per intent)
No text appears twice, within or across the two files (compared lower-cased,
without final punctuation). Some phrasings of each intent are held out of the
training file and appear only in dev. Python 3 standard library only; the
output depends only on SEED.

Usage: python3 tools/make-demo-data.py [--out DIR]
"""

import argparse
import os
import random

SEED = 20261126
TRAIN_PER_INTENT = 120
DEV_PER_INTENT = 20
# Per intent, this many templates appear only in the dev file, and this many dev
# rows come from them: the dev score then measures some generalisation beyond
# the training phrasings, not only recall of them.
HELD_OUT_TEMPLATES = 2
DEV_HELD_OUT_PER_INTENT = 8

SLOTS = {
    "city": ["Paris", "Berlin", "Tokyo", "New York", "Madrid", "Lisbon", "Chicago", "Toronto", "Dublin",
             "Rome", "Sydney", "Cairo", "Oslo", "Denver", "Seattle", "Boston", "Prague", "Vienna"],
    "day": ["today", "tomorrow", "on Monday", "on Friday", "this weekend", "next Tuesday", "on the 14th",
            "next week", "on Saturday morning", "tonight"],
    "when": ["today", "tomorrow", "this afternoon", "tonight", "this weekend", "on Sunday", "right now",
             "later today", "next week"],
    "cls": ["economy", "business class", "first class", "a window seat in economy", "premium economy"],
    "booking": ["my booking", "my reservation", "my flight", "my hotel room", "the trip I booked",
                "my ticket", "the reservation for two", "booking 48213", "my appointment"],
    "account": ["my checking account", "my savings account", "my account", "the joint account",
                "my current account", "my business account"],
    "amount": ["50 dollars", "$200", "100 euros", "twenty pounds", "$1,500", "300 bucks", "75 dollars"],
    "person": ["my mom", "my landlord", "Sarah", "my brother", "John", "my savings account", "Alex",
               "my roommate"],
    "card": ["my card", "my credit card", "my debit card", "my visa", "my bank card", "my mastercard"],
    "lost": ["lost", "misplaced", "dropped", "had stolen"],
    "lost_when": ["yesterday", "this morning", "on the bus", "at the mall", "last night", "at the airport",
                  "somewhere downtown"],
    "artist": ["Taylor Swift", "the Beatles", "Miles Davis", "Adele", "Queen", "Bach", "Daft Punk",
               "Bob Marley", "Nina Simone", "Radiohead"],
    "genre": ["jazz", "rock", "classical music", "lo-fi beats", "hip hop", "country", "relaxing music",
              "workout music", "80s hits", "indie pop"],
    "time": ["6 am", "6:30", "7 o'clock", "5:45 in the morning", "noon", "8:15 am", "10 pm", "half past six",
             "9"],
    "greet": ["hi", "hello", "hey", "good morning", "good evening", "hey there", "hiya", "hello again",
              "good afternoon", "howdy", "greetings", "hi there", "yo", "morning", "hello hello", "heya"],
    "bye": ["bye", "goodbye", "see you", "thanks, that's all", "talk to you later", "have a good day",
            "that's everything, bye", "cheers, bye", "ok bye for now", "see you later", "catch you later",
            "bye bye", "take care", "have a nice evening", "so long", "later"],
}

# Each intent: templates with {slot} fillers. Several share words with other intents on purpose.
INTENTS = {
    "book_flight": [
        "book a flight to {city} {day}",
        "i need a flight to {city} {day}",
        "can you book me a ticket to {city}",
        "find me flights from {city} to {city2} {day}",
        "I'd like to fly to {city} in {cls}",
        "reserve a seat on the next plane to {city}",
        "are there any flights to {city} {day}",
        "get me to {city} {day}, {cls} please",
        "{day} I have to be in {city}, book the flight",
        "what's the cheapest flight to {city} {day}",
        "I want to travel to {city} by plane {day}",
        "book {cls} from {city} to {city2}",
        "I cancelled the train, so book a flight to {city} instead",
        "my card works again, go ahead and book the flight to {city}",
        "if the weather is nice {day}, book me a flight to {city}",
        "don't cancel anything, just add a flight to {city} {day}",
    ],
    "cancel_booking": [
        "cancel {booking}",
        "I need to cancel {booking} {day}",
        "please call off {booking}",
        "can I still cancel {booking}",
        "I won't make it, cancel {booking} to {city}",
        "how do I cancel {booking}",
        "drop {booking}, plans changed",
        "I want a refund for {booking}",
        "{booking} {day} needs to be cancelled",
        "get rid of {booking} please",
        "I'm not going to {city} anymore, cancel it",
        "the weather in {city} looks awful, cancel {booking}",
        "I don't want to fly to {city} {day} after all",
        "no need to book anything, just cancel {booking}",
        "I lost my passport so cancel {booking}",
    ],
    "check_balance": [
        "what's the balance on {account}",
        "how much money is in {account}",
        "check {account} balance",
        "show me my balance",
        "how much do I have left on {card}",
        "what is my available balance",
        "tell me the balance of {account}",
        "do I have enough in {account} to pay {amount}",
        "how much is left in {account} {when}",
        "balance please",
        "what's my current balance",
        "before I send any money, what's my balance",
        "did the {amount} from {person} arrive in {account}",
        "after paying for the flight, how much is left in {account}",
        "I don't want to transfer anything, just show the balance",
    ],
    "transfer_money": [
        "send {amount} to {person}",
        "transfer {amount} from {account} to {person}",
        "move {amount} into {account}",
        "I want to pay {person} {amount}",
        "wire {amount} to {person} {when}",
        "can you transfer {amount} to {person}",
        "pay {person} back {amount}",
        "make a transfer of {amount} to {person}",
        "put {amount} in {account} from {card}",
        "{person} needs {amount}, send it {when}",
        "if my balance allows it, send {amount} to {person}",
        "pay for {person}'s flight, send them {amount}",
        "use {card} to pay {person} {amount}",
        "I want to split the dinner bill, send {person} {amount}",
    ],
    "report_lost_card": [
        "I {lost} {card}",
        "I think I {lost} {card} {lost_when}",
        "{card} was stolen",
        "block {card}, it's gone",
        "someone took {card}",
        "please freeze {card}, I {lost} it",
        "I can't find {card} anywhere",
        "how do I report {card} as lost",
        "{card} is missing, what should I do",
        "I need a replacement for {card}, I {lost} it",
        "lost {card} in {city}",
        "I can't book anything, my card was stolen {lost_when}",
        "my balance looks wrong and {card} is missing",
        "someone is using {card}, I think it was stolen in {city}",
        "{card} is gone, I {lost} it {lost_when}",
    ],
    "weather": [
        "what's the weather in {city} {when}",
        "will it rain {when}",
        "is it going to be sunny in {city} {when}",
        "how cold is it in {city}",
        "do I need an umbrella {when}",
        "weather forecast for {city}",
        "what's the temperature {when}",
        "is it snowing in {city} {when}",
        "how hot will it get {when}",
        "should I bring a jacket to {city} {when}",
        "{when} in {city}, rain or sun",
        "is it good weather to fly to {city} {when}",
        "will the storm in {city} get worse {when}",
        "should I cancel my run {when} because of the rain",
        "any chance of snow in {city} {when}",
    ],
    "play_music": [
        "play {artist}",
        "put on some {genre}",
        "play {genre} {when}",
        "I want to listen to {artist}",
        "can you play something by {artist}",
        "start my {genre} playlist",
        "music please, {genre}",
        "shuffle songs by {artist}",
        "turn on {genre}",
        "play the new album from {artist}",
        "let's hear some {genre}",
        "play some music to wake me up",
        "play a song about rain",
        "I'm bored, play {genre} until I fall asleep",
        "skip this song and play {artist}",
    ],
    "set_alarm": [
        "set an alarm for {time}",
        "wake me up at {time}",
        "alarm at {time} {when}",
        "I need to get up at {time} {when}",
        "can you set my alarm to {time}",
        "remind me at {time} to wake up",
        "set a wake-up alarm for {time}",
        "change my alarm to {time}",
        "make sure I'm up by {time} {when}",
        "new alarm, {time}",
        "wake me up at {time} with some {genre}",
        "set an alarm for {time} so I don't miss my flight",
        "I have to catch a flight {when}, alarm at {time}",
        "cancel the old alarm and set one for {time}",
    ],
    "greeting": [
        "{greet}",
        "{greet}!",
        "{greet}, is anyone there",
        "{greet}, how are you",
        "{greet} bot",
        "{greet}, nice to meet you",
        "{greet}, I have a question",
        "{greet}, can you help me",
        "{greet} how's it going",
        "{greet}, anybody home",
        "{greet}, I'm new here",
        "well {greet}",
        "{greet} :)",
        "{greet}, good to see you",
        "{greet}, I need some help with my account",
        "{greet}, I'm back",
        "{greet}, long time no see",
    ],
    "goodbye": [
        "{bye}",
        "{bye}!",
        "ok {bye}",
        "{bye}, you were helpful",
        "alright, {bye}",
        "great, {bye}",
        "nothing else, {bye}",
        "I'm done, {bye}",
        "{bye}, thank you so much",
        "that solved it, {bye}",
        "perfect, {bye}",
        "{bye} :)",
        "got it, {bye}",
        "my card problem is solved, {bye}",
        "that's all I needed, {bye}",
        "I'm all set, {bye}",
    ],
}

POLITE_PREFIX = ["", "", "", "", "please ", "hey, ", "hi, ", "excuse me, ", "um, ", "quick question: ",
                 "sorry to bother you, ", "ok so "]
POLITE_SUFFIX = ["", "", "", "", " please", " thanks", " thank you", " asap", " if possible", " pls"]
ENDINGS = ["", "", "", ".", ".", "?", "!"]
CHAT_ENDINGS = ["", "", ".", "!"]

# Intents whose texts should not take a request-style prefix or suffix.
NO_WRAP = {"greeting", "goodbye"}


def typo(rng, text):
    """Swaps, drops or doubles one letter of one word longer than three letters."""
    words = text.split(" ")
    candidates = [i for i, w in enumerate(words) if len(w) > 3 and w.isalpha()]
    if not candidates:
        return text
    i = rng.choice(candidates)
    w = words[i]
    j = rng.randrange(1, len(w) - 1)
    kind = rng.randrange(3)
    if kind == 0:
        w = w[:j] + w[j + 1] + w[j] + w[j + 2:]
    elif kind == 1:
        w = w[:j] + w[j + 1:]
    else:
        w = w[:j] + w[j] + w[j:]
    words[i] = w
    return " ".join(words)


def fill(rng, template):
    values = {}
    for slot, options in SLOTS.items():
        values[slot] = rng.choice(options)
    values["city2"] = rng.choice([c for c in SLOTS["city"] if c != values["city"]])
    return template.format(**values)


def compose(rng, intent, templates):
    text = fill(rng, rng.choice(templates))
    if intent in NO_WRAP:
        endings = CHAT_ENDINGS
    else:
        endings = ENDINGS
        prefix = rng.choice(POLITE_PREFIX)
        suffix = rng.choice(POLITE_SUFFIX)
        if "please" in text + prefix and suffix.strip() in ("please", "pls"):
            suffix = ""
        if "please" in text and prefix == "please ":
            prefix = ""
        text = prefix + text + suffix
    if not text.endswith((":)", "!")):
        text = text.rstrip("?.") + rng.choice(endings)
    roll = rng.random()
    if roll < 0.45:
        text = text[0].upper() + text[1:]
    elif roll < 0.55:
        text = text.lower()
    if rng.random() < 0.08:
        text = typo(rng, text)
    return " ".join(text.split())


def split_templates(rng, intent):
    """Holds HELD_OUT_TEMPLATES templates of an intent out of the training file."""
    templates = list(INTENTS[intent])
    rng.shuffle(templates)
    return templates[HELD_OUT_TEMPLATES:], templates[:HELD_OUT_TEMPLATES]


def sample(rng, intent, templates, count, seen):
    """Composes `count` texts never seen before (compared lower-cased, without final punctuation)."""
    texts = []
    attempts = 0
    while len(texts) < count and attempts < count * 200:
        attempts += 1
        text = compose(rng, intent, templates)
        key = text.lower().rstrip("!?. ")
        if key in seen:
            continue
        seen.add(key)
        texts.append(text)
    if len(texts) < count:
        raise SystemExit(f"{intent}: only {len(texts)} distinct texts; add templates or fillers")
    return texts


def generate(rng):
    """Returns (train, dev) rows, balanced across intents, no text repeated anywhere."""
    seen = set()
    train, dev = [], []
    for intent in INTENTS:
        shared, held_out = split_templates(rng, intent)
        dev_shared = DEV_PER_INTENT - DEV_HELD_OUT_PER_INTENT
        texts = sample(rng, intent, shared, TRAIN_PER_INTENT + dev_shared, seen)
        train += [(t, intent) for t in texts[:TRAIN_PER_INTENT]]
        dev += [(t, intent) for t in texts[TRAIN_PER_INTENT:]]
        dev += [(t, intent) for t in sample(rng, intent, held_out, DEV_HELD_OUT_PER_INTENT, seen)]
    rng.shuffle(train)
    rng.shuffle(dev)
    return train, dev


def write(path, rows):
    with open(path, "w", encoding="utf-8", newline="\n") as f:
        f.write("text\tlabel\n")
        for text, label in rows:
            assert "\t" not in text and "\n" not in text
            f.write(f"{text}\t{label}\n")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    here = os.path.dirname(os.path.abspath(__file__))
    parser.add_argument("--out", default=os.path.join(here, "..", "demo"), help="output folder (default: demo/)")
    args = parser.parse_args()

    train, dev = generate(random.Random(SEED))
    os.makedirs(args.out, exist_ok=True)
    write(os.path.join(args.out, "intents-train.tsv"), train)
    write(os.path.join(args.out, "intents-dev.tsv"), dev)
    print(f"{len(INTENTS)} intents: {len(train)} train rows, {len(dev)} dev rows in {os.path.normpath(args.out)}")


if __name__ == "__main__":
    main()
