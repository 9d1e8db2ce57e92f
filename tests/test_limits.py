"""Limits: reset times parsed from usage-limit banners (``reset_time_from_banner``).

Every wording marked "seen:" was copied from public material (GitHub issues of
anthropics/claude-code and openai/codex, Codex's source, and the test fixtures of public tools
that resume agents after limits). "REAL-AGENTS" marks the wordings listed in
/work/shared/REAL-AGENTS.md. Unmarked rows are constructed edge cases.

The local zone is pinned to America/Los_Angeles, and most rows use NOW below.
"""

import random
from datetime import datetime, timedelta, timezone, tzinfo

import pytest
from zoneinfo import ZoneInfo

from conftest import agents as ag

reset_time_from_banner = ag.reset_time_from_banner
system_local_zone = ag.system_local_zone

UTC = timezone.utc
LOCAL = ZoneInfo("America/Los_Angeles")  # the pinned "machine" zone
NY = ZoneInfo("America/New_York")
CHICAGO = ZoneInfo("America/Chicago")
BERLIN = ZoneInfo("Europe/Berlin")

#: Wednesday 2026-03-04 14:30 UTC = 06:30 in Los Angeles (PST), 08:30 Chicago, 15:30 Berlin.
#: US clocks spring forward on Sunday 2026-03-08, so "next Monday" is already PDT.
NOW = datetime(2026, 3, 4, 14, 30, tzinfo=UTC)


def at(year, month, day, hour=0, minute=0, zone=LOCAL):
    return datetime(year, month, day, hour, minute, tzinfo=zone)


def zone(name):
    return ZoneInfo(name)


# ---------------------------------------------------------------------------------------------
# reset_time_from_banner: (banner, now, expected)
# ---------------------------------------------------------------------------------------------

REAL_AGENTS_WORDINGS = [
    # REAL-AGENTS: every usage-limit wording listed there.
    ("Claude usage limit reached. Your limit will reset at 7pm (America/Chicago).", NOW,
     at(2026, 3, 4, 19, zone=CHICAGO)),
    ("5-hour limit reached ∙ resets 3am", NOW, at(2026, 3, 5, 3)),  # 3am passed in LA: tomorrow
    ("5-hour limit reached · resets 3am", NOW, at(2026, 3, 5, 3)),
    ("You've hit your session limit · resets 8:10pm (Europe/Berlin)", NOW, at(2026, 3, 4, 20, 10, zone=BERLIN)),
    ("You've hit your weekly limit · resets Mon 12:00am", NOW, at(2026, 3, 9, 0, 0)),
    # Seen: public screen fixture (agent-budget-watch / agent_while_true), Claude Code 2.1.261.
    ("● Usage limit reached · resets in 30h\n"
     "  the usage limit now resets more than 24 hours out, so this task will not\n"
     "  resume on its own (/rate-limit-options to wait anyway)", NOW, NOW + timedelta(hours=30)),
    ("You're out of extra usage · resets 9pm", NOW, at(2026, 3, 4, 21)),
    ("Claude AI usage limit reached|1767225600", NOW, datetime(2026, 1, 1, tzinfo=UTC)),
    ("Claude AI usage limit reached|1767225600000", NOW, datetime(2026, 1, 1, tzinfo=UTC)),  # milliseconds
    ("You've hit your usage limit. Upgrade to Pro (https://openai.com/chatgpt/pricing) or try again in "
     "2 days 17 hours 14 minutes.", NOW, NOW + timedelta(days=2, hours=17, minutes=14)),
    ("You've hit your usage limit. Visit https://chatgpt.com/codex/settings/usage to purchase more credits "
     "or try again at 6:44 PM.", NOW, at(2026, 3, 4, 18, 44)),
    ("You've hit your usage limit. Try again in less than a minute.", NOW, NOW + timedelta(seconds=60)),
]

BRIEF_FORMS = [
    ("resets in 4h51m", NOW, NOW + timedelta(hours=4, minutes=51)),
    ("429 Rate limited · retrying in 3s · attempt 4/10", NOW, NOW + timedelta(seconds=3)),
    ("in 20s", NOW, NOW + timedelta(seconds=20)),
    ("in 5 minutes", NOW, NOW + timedelta(minutes=5)),
    ("try again in 1 hour 2 minutes 3 seconds", NOW, NOW + timedelta(hours=1, minutes=2, seconds=3)),
    ("resets 15:00", NOW, at(2026, 3, 4, 15)),  # 24-hour clock
    ("resets 6:44 PM", NOW, at(2026, 3, 4, 18, 44)),
    ("resets 3pm (UTC)", NOW, at(2026, 3, 4, 15, zone=UTC)),
    ("resets Tuesday 9am", NOW, at(2026, 3, 10, 9)),
    ("resets Sat 3pm (Europe/Paris)", NOW, at(2026, 3, 7, 15, zone=zone("Europe/Paris"))),
    ("resets Jan 5, 3pm", datetime(2025, 12, 30, 12, tzinfo=UTC), at(2026, 1, 5, 15)),  # next year
    ("resets Nov 30 at 5:00 PM", NOW, at(2026, 11, 30, 17)),
]

SEEN_CLAUDE = [
    # seen: anthropics/claude-code#15064
    ("⎿  Claude usage limit reached. Your limit will reset at 9am (America/Chicago).", NOW,
     at(2026, 3, 4, 9, zone=CHICAGO)),
    # seen: aniketkarne/CCAutoRenew#3 (no zone: local)
    ("Claude usage limit reached. Your limit will reset at 12am.", NOW, at(2026, 3, 5, 0)),
    # seen: anthropics/claude-code#2087 (a zone name with a "+")
    ("Claude usage limit reached. Your limit will reset at 1pm (Etc/GMT+5).", NOW, at(2026, 3, 4, 18, zone=UTC)),
    # seen: anthropics/claude-code#9236 (wrapped across two lines)
    ("Claude usage limit reached. Your limit will reset \n     at 3pm (America/Santiago).", NOW,
     at(2026, 3, 4, 15, zone=zone("America/Santiago"))),
    # seen: anthropics/claude-code#22946
    ("You've hit your limit · resets 10pm (America/New_York)", NOW, at(2026, 3, 4, 22, zone=NY)),
    # seen: anthropics/claude-code#77082 (8:30pm already past in Tokyo: tomorrow)
    ("You've hit your session limit · resets 8:30pm (Asia/Tokyo)", NOW, at(2026, 3, 5, 20, 30, zone=zone("Asia/Tokyo"))),
    # seen: anthropics/claude-code#74079
    ("You've hit your session limit · resets 12:50am (America/Los_Angeles)", NOW, at(2026, 3, 5, 0, 50)),
    # seen: anthropics/claude-code#69995, #72691, #93343
    ("You've hit your session limit · resets 11:20am (Europe/Budapest)", NOW,
     at(2026, 3, 5, 11, 20, zone=zone("Europe/Budapest"))),
    ("You've hit your session limit · resets 1:40pm (Europe/Paris)", NOW, at(2026, 3, 5, 13, 40, zone=zone("Europe/Paris"))),
    ("You've hit your session limit · resets 4:20pm (Asia/Tbilisi)", NOW, at(2026, 3, 5, 16, 20, zone=zone("Asia/Tbilisi"))),
    # seen: anthropics/claude-code#19472
    ("You've hit your limit · resets 11pm (America/Anchorage)", NOW, at(2026, 3, 4, 23, zone=zone("America/Anchorage"))),
    # seen: anthropics/claude-code#11577, #6392
    ("Session limit reached ∙ resets 8pm", NOW, at(2026, 3, 4, 20)),
    ("5-hour limit reached ∙ resets 5am", NOW, at(2026, 3, 5, 5)),
    # seen: anthropics/claude-code#10333 (date with and without a time)
    ("Opus weekly limit reached ∙ resets Oct 31, 9am", datetime(2025, 10, 25, 18, tzinfo=UTC), at(2025, 10, 31, 9)),
    ("Opus weekly limit reached ∙ resets Oct 24", datetime(2025, 10, 20, 18, tzinfo=UTC), at(2025, 10, 24, 0)),
    # seen: anthropics/claude-code#56219, #42654, #84141 (Asia/Calcutta is a legacy alias)
    ("You're out of extra usage · resets 7pm (Asia/Seoul)", NOW, at(2026, 3, 5, 19, zone=zone("Asia/Seoul"))),
    ("You're out of extra usage · resets 9am (America/Cordoba)", NOW, at(2026, 3, 5, 9, zone=zone("America/Cordoba"))),
    ("[BUG] You're out of extra usage · resets 5:50pm (Asia/Calcutta)", NOW,
     at(2026, 3, 5, 17, 50, zone=zone("Asia/Calcutta"))),
    # seen: anthropics/claude-code#22603, filed 2026-02-02
    ("You're out of extra usage · resets Feb 4, 8pm (Europe/Budapest)", datetime(2026, 2, 2, 19, 49, tzinfo=UTC),
     at(2026, 2, 4, 20, zone=zone("Europe/Budapest"))),
    # seen: anthropics/claude-code#91376 (manual kind, but the time still parses)
    ("You've hit your monthly spend limit · your session limit resets 2:40pm (Asia/Jakarta)", NOW,
     at(2026, 3, 5, 14, 40, zone=zone("Asia/Jakarta"))),
    # seen: anthropics/claude-code#55876, filed 2026-05-03
    ("You've hit your limit · resets May 5 at 9pm (America/New_York)", datetime(2026, 5, 3, 20, 54, tzinfo=UTC),
     at(2026, 5, 5, 21, zone=NY)),
    # seen: a public claude-auto-retry style fixture quoting a real weekly banner
    ("You've hit your weekly limit · resets Sep 24 at 3pm (Australia/Brisbane)", datetime(2026, 9, 20, tzinfo=UTC),
     at(2026, 9, 24, 15, zone=zone("Australia/Brisbane"))),
    # seen: Lectern limits table, from the Claude Code 2.1.283 bundle
    ("You've hit your weekly limit · resets Oct 3, 9am (America/Chicago)", datetime(2026, 9, 29, tzinfo=UTC),
     at(2026, 10, 3, 9, zone=CHICAGO)),
    ("You've hit your session limit · resets 3pm (UTC) · progress saved", NOW, at(2026, 3, 4, 15, zone=UTC)),
    # seen: anthropics/claude-code#93343 comment: a "/loop wakeup (Sep 10 1:09pm)" line above is not a reset
    ("✻ Claude resuming /loop wakeup (Sep 10 1:09pm)\nYou've hit your weekly limit · resets 3am (Europe/London)\n"
     "/usage-credits to finish what you’re working on.", NOW, at(2026, 3, 5, 3, zone=zone("Europe/London"))),
    # seen: anthropics/claude-code#80062 (claude.ai wording, typographic apostrophe)
    ("You’ve hit your limit for Claude messages. Limits will reset at 9:30 AM.  View your usage details.", NOW,
     at(2026, 3, 4, 9, 30)),
    # seen: agent_while_true fixtures, Claude Code 2.1.261 screenshot (banner + upsell + footer)
    ("  ⎿  You've hit your session limit · resets 8:10pm (Europe/Berlin)\n"
     "     /upgrade or /usage-credits to finish what you're working on.\n\n✳ Crunched for 0s · done 7:31 PM",
     NOW, at(2026, 3, 4, 20, 10, zone=BERLIN)),
    # seen: same fixtures: soft-wrapped banner, NBSP after the gutter, U+2019 and "AM" with a space
    ("  ⎿  You've hit your session limit ·\n     resets 8:10pm (Europe/Berlin)", NOW, at(2026, 3, 4, 20, 10, zone=BERLIN)),
    ("  ⎿ \xa0You've hit your session limit · resets 6:50pm (Europe/Berlin)", NOW, at(2026, 3, 4, 18, 50, zone=BERLIN)),
    ("\u25b8 You\u2019ve hit your session limit \u00b7 resets 2:20 AM", NOW, at(2026, 3, 5, 2, 20)),
    ("● You've hit your Opus limit · resets 8:10pm\n  Switch to another model to keep going", NOW, at(2026, 3, 4, 20, 10)),
    ("● Usage limit reached · resets 8:10pm\n  Continuing automatically when your limit resets", NOW, at(2026, 3, 4, 20, 10)),
    # seen: Claude Code 2.1.234 wait banner (public reimplementation of its strings)
    ("Usage limit reached · continuing automatically at 3:40pm · esc to cancel", NOW, at(2026, 3, 4, 15, 40)),
    # seen: anthropics/claude-code#91817, #3558; Wei-Shaw/claude-relay-service#56
    ("✻ 529 Overloaded · Retrying in 4s · attempt 6/10  ⎿  If it persists, check https://status.claude.com.", NOW,
     NOW + timedelta(seconds=4)),
    ('  ⎿  API Error (529 {"type":"error","error":{"type":"overloaded_error","message":"Overloaded"}}) · '
     "Retrying in 1 seconds… (attempt 1/10)", NOW, NOW + timedelta(seconds=1)),
    ('API Error (429 {"type":"error","error":{"type":"rate_limit_error","message":"This request would exceed your '
     "account's rate limit. Please try again later.\"}}) · Retrying in 2892 seconds… (attempt 1/10)", NOW,
     NOW + timedelta(seconds=2892)),
    # seen: public fixtures of resume tools: "resets in 5m", "resets in 1d 5h", ccusage's "1 hr 47 min"
    ("  ⎿  You've hit your session limit · resets in 5m", NOW, NOW + timedelta(minutes=5)),
    ("You've hit your session limit · resets in 1d 5h", NOW, NOW + timedelta(hours=29)),
    ("  current ●●●●●●●●●● 100%  ⟳ resets in 1 hr 47 min", NOW, NOW + timedelta(hours=1, minutes=47)),
    ("usage limit · resets in: 3 hours", NOW, NOW + timedelta(hours=3)),
    # seen: anthropics/claude-code#1047 (Anthropic API workspace cap; ISO date, bare UTC)
    ("You have reached your specified workspace API usage limits. You will regain access on 2025-06-01 at "
     "00:00 UTC.", datetime(2025, 5, 11, tzinfo=UTC), at(2025, 6, 1, 0, zone=UTC)),
]

SEEN_CODEX = [
    # seen: openai/codex#3899 (wrapped mid-duration), #4095, #3031, #3257
    ("■ You've hit your usage limit. Upgrade to Pro (https://openai.com/chatgpt/pricing) or try again in 5 days "
     "22 hours 11\nminutes.", NOW, NOW + timedelta(days=5, hours=22, minutes=11)),
    ("■ You've hit your usage limit. Upgrade to Pro (https://openai.com/chatgpt/pricing) or try again in 4 days "
     "6 hours 37 minutes.", NOW, NOW + timedelta(days=4, hours=6, minutes=37)),
    ("🖐  You've hit your usage limit. Upgrade to Pro (https://openai.com/chatgpt/pricing) or try again in 3 hours "
     "2 minutes.", NOW, NOW + timedelta(hours=3, minutes=2)),
    ("You've hit your usage limit. Try again in 4 days 20 hours 9 minutes.", NOW, NOW + timedelta(days=4, hours=20, minutes=9)),
    # seen: openai/codex#26668, #21047, #18083 (Codex's "%b %-d<suffix>, %Y %-I:%M %p")
    ("You've hit your usage limit. Upgrade to Plus to continue using Codex (https://chatgpt.com/explore/plus), "
     "or try again at Jul 5th, 2026 8:19 PM.", datetime(2026, 6, 5, tzinfo=UTC), at(2026, 7, 5, 20, 19)),
    ("You've hit your usage limit. Upgrade to Plus to continue using Codex (https://chatgpt.com/explore/plus), "
     "or try again at May 11th, 2026 1:36 PM.", datetime(2026, 5, 4, tzinfo=UTC), at(2026, 5, 11, 13, 36)),
    ("■ You've hit your usage limit. Visit https://chatgpt.com/codex/settings/usage to purchase more credits or "
     "try again at Apr 17th, 2026 6:10 AM.", datetime(2026, 4, 16, tzinfo=UTC), at(2026, 4, 17, 6, 10)),
    # seen: a public test fixture ("live QA Codex quota error")
    ("Error: You've hit your usage limit for GPT-5.3-Codex-Spark. Switch to another model now, or try again at "
     "Jul 9th, 2026 1:47 AM.", datetime(2026, 7, 8, tzinfo=UTC), at(2026, 7, 9, 1, 47)),
    # seen: public fixtures quoting production text
    ("ERROR: You've hit your usage limit. Upgrade to Pro (https://chatgpt.com/explore/pro), visit "
     "https://chatgpt.com/codex/settings/usage to purchase more credits or try again at 10:00 PM.", NOW,
     at(2026, 3, 4, 22)),
    ("▌ You've hit your usage limit. Try again at 8:10 PM.", NOW, at(2026, 3, 4, 20, 10)),
    # seen: agent_while_true fixtures, Codex 0.153.4 and 0.155.1 (wrapped; U+2019 apostrophe)
    ("■ You've hit your usage limit. Upgrade to Pro (https://chatgpt.com/explore/pro), visit\n"
     "  https://chatgpt.com/codex/settings/usage to purchase more credits or try again at 3:36 PM.", NOW,
     at(2026, 3, 4, 15, 36)),
    ("\u25a0 You\u2019ve hit your usage limit. Upgrade to Pro (https://chatgpt.com/explore/pro), visit\n"
     "  https://chatgpt.com/codex/settings/usage to purchase more credits or try again at 3:42 AM.", NOW,
     at(2026, 3, 5, 3, 42)),
    # ICU's narrow no-break space before PM
    ("You've hit your usage limit. Try again at 8:19\u202fPM.", NOW, at(2026, 3, 4, 20, 19)),
    # seen: a public Codex session transcript; openai/codex#41689 (app, 24-hour clock, "after")
    ("You've hit your usage limit. Upgrade your plan or add credits to continue, or try again at Aug 10, 2026, "
     "11:12 AM.", datetime(2026, 8, 9, tzinfo=UTC), at(2026, 8, 10, 11, 12)),
    ("You have reached the usage limit. Upgrade or add credits to continue, or try again after September 6, 2026, "
     "11:15.", datetime(2026, 8, 30, tzinfo=UTC), at(2026, 9, 6, 11, 15)),
    # seen: openai/codex#19417, #24499 (Codex app)
    ("You’re out of Codex messages\nYour rate limit resets on Apr 25, 2026, 12:54 AM. To continue using Codex, add "
     "credits or upgrade to Pro today.", datetime(2026, 4, 24, tzinfo=UTC), at(2026, 4, 25, 0, 54)),
    ("You’re out of Codex messages\nTo get more access now, send a request to your admin, or wait until "
     "May 30, 2026, 4:12 PM.", datetime(2026, 5, 25, tzinfo=UTC), at(2026, 5, 30, 16, 12)),
    # seen: james-6-23/codex2api#9 (the API's JSON error body)
    ('{"error":{"type":"usage_limit_reached","message":"The usage limit has been reached","plan_type":"free",'
     '"resets_at":1775317531,"resets_in_seconds":602705}}', NOW, datetime.fromtimestamp(1775317531, UTC)),
    ('{"resets_in_seconds":602705}', NOW, NOW + timedelta(seconds=602705)),
    # seen: codex-rs core/src/error.rs RateLimitedError
    ("rate limited (status 429 Too Many Requests), retry after 3s", NOW, NOW + timedelta(seconds=3)),
    # seen: Lectern table, gemini-cli's own message (a cheap extra)
    ("You have exhausted your capacity on this model. Your quota will reset after 19h14m47s.", NOW,
     NOW + timedelta(hours=19, minutes=14, seconds=47)),
]

EDGE_CASES = [
    # 12am is midnight, 12pm is noon.
    ("resets 12am", NOW, at(2026, 3, 5, 0)),
    ("resets 12:00am", NOW, at(2026, 3, 5, 0)),
    ("resets 12pm", NOW, at(2026, 3, 4, 12)),
    ("resets 12:30pm (UTC)", NOW, at(2026, 3, 5, 12, 30, zone=UTC)),  # 12:30 UTC already passed
    # Just passed → tomorrow; exactly now → now.
    ("resets 6:29am", NOW, at(2026, 3, 5, 6, 29)),
    ("resets 6:30am", NOW, NOW),
    # Weekday equal to today: ahead → today, passed → next week (which is PDT here).
    ("resets Wednesday 9am", NOW, at(2026, 3, 4, 9)),
    ("resets Wed 5am", NOW, at(2026, 3, 11, 5)),
    ("resets Wed", NOW, at(2026, 3, 11, 0)),  # weekday alone: its midnight, already passed today
    # A date more than a day past is next year's; less than a day past is returned as is.
    ("You're out of extra usage · resets Feb 4, 8pm (Europe/Budapest)", NOW,
     at(2027, 2, 4, 20, zone=zone("Europe/Budapest"))),
    ("You're out of extra usage · resets Feb 4, 8pm (Europe/Budapest)", datetime(2026, 2, 5, 10, tzinfo=UTC),
     at(2026, 2, 4, 20, zone=zone("Europe/Budapest"))),
    # An explicit year never rolls forward.
    ("try again at Jan 2nd, 2026 9:00 AM.", NOW, at(2026, 1, 2, 9)),
    # Unknown zone → local; multi-level zone names keep their case.
    ("resets 7pm (Mars/Olympus_Mons)", NOW, at(2026, 3, 4, 19)),
    ("resets 7pm (America/Argentina/Buenos_Aires)", NOW, at(2026, 3, 4, 19, zone=zone("America/Argentina/Buenos_Aires"))),
    ("resets 9am (NZDT, UTC+13)", NOW, at(2026, 3, 4, 9)),  # not a zone name: local
    # ANSI colour codes from a capture with -e.
    ("\x1b[31m5-hour \x1b[1mlimit\x1b[0m reached · resets 3pm\x1b[0m", NOW, at(2026, 3, 4, 15)),
    # A naive "now" is read in the local zone.
    ("resets in 2h", datetime(2026, 3, 4, 6, 30), NOW + timedelta(hours=2)),
    # First reset phrase in the text wins.
    ("You've hit your limit · resets 3pm (UTC), or try again in 5 hours", NOW, at(2026, 3, 4, 15, zone=UTC)),
    # Decimal and "and"-joined durations.
    ("Please try again in 4 hours and 12 minutes", NOW, NOW + timedelta(hours=4, minutes=12)),
    ("try again in 1.5 hours", NOW, NOW + timedelta(hours=1, minutes=30)),
    ("Reconnecting... retrying in 200ms", NOW, NOW + timedelta(milliseconds=200)),
    # "at" between weekday or date and time; ISO with T and Z.
    ("resets Monday at 9am", NOW, at(2026, 3, 9, 9)),
    ("resets Mon, Jan 5 at 9:05 a.m.", datetime(2026, 1, 1, tzinfo=UTC), at(2026, 1, 5, 9, 5)),  # date beats weekday
    ("regain access on 2025-06-01T00:00:00Z", datetime(2025, 5, 11, tzinfo=UTC), at(2025, 6, 1, 0, zone=UTC)),
]

DST_CASES = [
    # America/New_York springs forward on 2026-03-08 at 2:00 EST → 3:00 EDT. now = 01:00 EST.
    # 2:30am does not exist that day: the later reading, 3:30 EDT, is never before the reset.
    ("resets 2:30am (America/New_York)", datetime(2026, 3, 8, 6, tzinfo=UTC), datetime(2026, 3, 8, 7, 30, tzinfo=UTC)),
    ("resets 3am (America/New_York)", datetime(2026, 3, 8, 6, tzinfo=UTC), datetime(2026, 3, 8, 7, 0, tzinfo=UTC)),
    ("resets 1:30am (America/New_York)", datetime(2026, 3, 8, 6, tzinfo=UTC), datetime(2026, 3, 8, 6, 30, tzinfo=UTC)),
    # "10pm" already passed on the evening before the change: tomorrow 22:00 is EDT (02:00Z),
    # not 24 h later (03:00Z).
    ("resets 10pm (America/New_York)", datetime(2026, 3, 8, 3, 30, tzinfo=UTC), datetime(2026, 3, 9, 2, 0, tzinfo=UTC)),
    # Durations are real time: 24 h after Saturday noon EST is Sunday 13:00 EDT.
    ("resets in 24h", datetime(2026, 3, 7, 12, tzinfo=NY), datetime(2026, 3, 8, 17, 0, tzinfo=UTC)),
    # Falls back on 2026-11-01 at 2:00 EDT → 1:00 EST; 1:30am happens twice: take the later (EST).
    ("resets 1:30am (America/New_York)", datetime(2026, 11, 1, 4, tzinfo=UTC), datetime(2026, 11, 1, 6, 30, tzinfo=UTC)),
    # Same rules when New York is the machine's zone (see test_dst_in_the_local_zone).
]

UNPARSEABLE = [
    # seen: openai/codex#28089 (Codex app in pt-BR: a localised date this module does not read)
    "You've hit your usage limit. Upgrade your plan to continue, or try again at 10 de jul. de 2026, 11:52.",
    # seen: codex-rs error.rs (no reset known); openai/codex#2669 ("every 5h" is not a duration)
    "You've hit your usage limit. Try again later.",
    "🖐 You've hit your usage limit. Upgrade to Pro (https://openai.com/chatgpt/pricing), or wait for limits to "
    "reset (every 5h and every week.).",
    "You've hit your usage limit. Upgrade to Plus to continue using Codex (https://openai.com/chatgpt/pricing).",
    # seen: anthropics/claude-code#79167; Claude 2.1.234 wait banner; ready line
    "You've hit your monthly spend limit · raise it at claude.ai/settings/usage?from=cc_cli_limit_message",
    "Usage limit reached · continuing automatically when it resets · esc to cancel",
    "Usage limit has reset · press enter to continue",
    # seen: anthropics/claude-code#69023, #46277
    "API Error: Request rejected (429) · Rate limited. Please try again later.",
    "Credit balance too low · Add funds: https://platform.claude.com/settings/billing",
    # a status line is not a banner: "reset:4h51m" is not read
    "  Opus 5 ctx:28% 5h:19% reset:4h51m",
    "Reconnecting... 4/5 (21s • esc to interrupt)",
    "I can help you with that code",
    "",
    # impossible or absurd values
    "resets 3", "resets 30", "resets 25:00", "resets 13pm", "resets 0am", "resets 9:75pm", "resets Feb 30",
    "try again in 99999999999 days", "Claude AI usage limit reached|99999999999999",
    "try again at Dec 31st, 9999 11:59 PM",  # past datetime's range once converted to UTC
]


@pytest.mark.parametrize(
    "banner, now, expected",
    REAL_AGENTS_WORDINGS + BRIEF_FORMS + SEEN_CLAUDE + SEEN_CODEX + EDGE_CASES + DST_CASES,
)
def test_reset_time_from_banner(banner, now, expected):
    reset = reset_time_from_banner(banner, now, LOCAL)
    assert reset is not None, banner
    assert reset.tzinfo is UTC
    assert reset == expected, f"{banner!r}: {reset.isoformat()} != {expected.isoformat()}"


@pytest.mark.parametrize("banner", UNPARSEABLE)
def test_unparseable_banners_give_none(banner):
    assert reset_time_from_banner(banner, NOW, LOCAL) is None, banner


@pytest.mark.parametrize(
    "banner, grace, expected",
    [
        # The banner stays on screen after its reset: within grace, today's (past) time is kept.
        ("resets 6:29am", timedelta(minutes=10), at(2026, 3, 4, 6, 29)),
        ("resets 6:00am", timedelta(minutes=10), at(2026, 3, 5, 6, 0)),  # 30 min past: tomorrow
        ("resets Wed 6:25am", timedelta(minutes=10), at(2026, 3, 4, 6, 25)),
        ("resets Wed 6:25am", timedelta(0), at(2026, 3, 11, 6, 25)),
    ],
)
def test_grace_keeps_a_just_passed_reset(banner, grace, expected):
    assert reset_time_from_banner(banner, NOW, LOCAL, grace=grace) == expected


def test_dst_in_the_local_zone():
    # Banners without a zone use the machine's: the same DST rules apply.
    before_the_change = datetime(2026, 3, 8, 6, tzinfo=UTC)  # 01:00 EST
    assert reset_time_from_banner("5-hour limit reached · resets 2:30am", before_the_change, NY) == \
        datetime(2026, 3, 8, 7, 30, tzinfo=UTC)
    assert reset_time_from_banner("You've hit your weekly limit · resets Mon 12:00am", before_the_change, NY) == \
        datetime(2026, 3, 9, 4, 0, tzinfo=UTC)  # Monday 00:00 EDT


def test_result_is_utc_even_in_a_repeated_hour():
    # 1:30am EST on the fall-back day as a New York datetime has fold=1 and would compare
    # unequal (==) to the same instant in any other zone (PEP 495); UTC results avoid that.
    reset = reset_time_from_banner("resets 1:30am (America/New_York)", datetime(2026, 11, 1, 4, tzinfo=UTC), LOCAL)
    assert reset.tzinfo is UTC and reset == datetime(2026, 11, 1, 6, 30, tzinfo=UTC)
    assert reset.astimezone(NY).utcoffset() == timedelta(hours=-5)
    reset = reset_time_from_banner("resets 8:10pm (Europe/Berlin)", NOW, LOCAL)
    assert reset.tzinfo is UTC and reset.astimezone(BERLIN).timetuple()[3:5] == (20, 10)


def test_default_local_zone_is_used_without_raising():
    reset = reset_time_from_banner("5-hour limit reached · resets 3am", NOW)
    assert reset is not None and NOW <= reset <= NOW + timedelta(days=1, hours=1)


def test_system_local_zone(monkeypatch):
    monkeypatch.setenv("TZ", "America/Chicago")
    assert str(system_local_zone()) == "America/Chicago"
    monkeypatch.setenv("TZ", "EST5EDT,M3.2.0,M11.1.0")  # POSIX form: only an offset is known
    assert isinstance(system_local_zone(), tzinfo)
    monkeypatch.delenv("TZ")
    assert isinstance(system_local_zone(), tzinfo)


def test_non_strings_and_odd_now_never_raise():
    assert reset_time_from_banner(None, NOW, LOCAL) is None
    assert reset_time_from_banner(b"resets 3am", NOW, LOCAL) is None
    assert reset_time_from_banner("resets 3am", "not a datetime", LOCAL) is None


# ---------------------------------------------------------------------------------------------
# fuzz
# ---------------------------------------------------------------------------------------------

FRAGMENTS = [
    "resets", "reset", "at", "on", "in", "try again in", "try again at", "retrying in", "retry after",
    "limit reached|", "resets_at\":", "resets_in_seconds\":", " ", " · ", ", ", "\n", "(", ")", "/", ":", "|",
    "am", "pm", "AM", "PM", "a.m.", "Mon", "Tuesday", "Sep", "Oct", "Feb", "29", "30", "31", "0", "12", "13",
    "24", "99", "2026", "9999", "0000", "1767225600", "1767225600000", "99999999999999999999", "4h51m", "1d",
    "ms", "days", "hours", "minutes", "less than a minute", "America/New_York", "Etc/GMT+5", "UTC", "Z", "T",
    "usage limit", "You've hit your", "monthly spend limit", "529", "429", "\x1b[31m", "\u202f", "’", "│",
    "-", "1.5", ".", "st", "th", "../..", "\x00", "🖐", "∙",
]


CLAUDE = ag.Loader(ag.Path("/nonexistent/agents.toml")).load_backends({})["claude"]
PANE = ag.Pane(session="s", pane_id="%1", pid=1, dead=False, dead_status=None, activity=0, created=0,
               in_mode=False, owner="", width=80, height=24)


def test_fuzz_never_raises():
    rng = random.Random(20260304)
    nows = [NOW, datetime(9999, 12, 31, 23, tzinfo=UTC), datetime(1, 1, 2, tzinfo=UTC), datetime(2026, 3, 8, 7)]
    for _ in range(6000):
        if rng.random() < 0.3:
            text = "".join(chr(rng.randrange(0, 0x2FFF)) for _ in range(rng.randrange(0, 60)))
        else:
            text = "".join(rng.choice(FRAGMENTS) + rng.choice(["", " "]) for _ in range(rng.randrange(0, 14)))
        reset = reset_time_from_banner(text, rng.choice(nows), LOCAL, grace=timedelta(minutes=rng.randrange(0, 90)))
        assert reset is None or (isinstance(reset, datetime) and reset.tzinfo is not None)
        screen = ag.read_screen(CLAUDE, PANE, [text, "─" * 40, "❯ ", "─" * 40], NOW.timestamp())
        assert screen.state in ("idle", "busy", "dialog", "limited", "unknown")
