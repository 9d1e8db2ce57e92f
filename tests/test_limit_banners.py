"""Limit banners on a realistic screen: each real wording reads as its kind, and never when quoted.

Every row is a banner copied from public material (GitHub issues of anthropics/claude-code and
openai/codex, the CLIs' own strings and source, the fixtures of public tools that resume agents
after limits); the comment names the source, "REAL-AGENTS" marks /work/shared/REAL-AGENTS.md.
The third column says which CLI prints it. The banner is put at the bottom of that CLI's screen
and ``read_screen`` must call it "limited" with the expected kind; rows of kind "" are not limits
(warnings, the ready line, ordinary output). The same banner quoted inside an agent's reply must
never read as a limit: the patterns are anchored to their line.
"""

from __future__ import annotations

import datetime as dt
import re
from pathlib import Path

import pytest

from conftest import agents as ag

NOW = dt.datetime(2026, 3, 4, 14, 30, tzinfo=dt.timezone.utc).timestamp()

#: A bare fragment of an API error is not a banner: as a line of its own it is as likely to be a
#: word in code or a list the agent prints, so no anchored pattern can tell the two apart. The
#: real banners that carry these words are rows of their own (``API Error: 529 {…}``, ``✻ 529
#: Overloaded · Retrying in 4s``); alone, these rows must read as no limit at all.

# (expected kind, banner, cli)
BANNERS = [
    # --- usage: wait it out ---------------------------------------------------------------
    ("usage", "Claude usage limit reached. Your limit will reset at 7pm (America/Chicago).", "claude"),  # REAL-AGENTS
    ("usage", "5-hour limit reached ∙ resets 3am", "claude"),  # REAL-AGENTS
    ("usage", "5-hour limit reached · resets 3am", "claude"),  # REAL-AGENTS
    ("usage", "You've hit your session limit · resets 8:10pm (Europe/Berlin)", "claude"),  # REAL-AGENTS
    ("usage", "You've hit your weekly limit · resets Mon 12:00am", "claude"),  # REAL-AGENTS
    ("usage", "● Usage limit reached · resets in 30h\n  the usage limit now resets more than 24 hours out, so this "
              "task will not\n  resume on its own (/rate-limit-options to wait anyway)", "claude"),  # REAL-AGENTS
    ("usage", "You're out of extra usage · resets 9pm", "claude"),  # REAL-AGENTS; frankbria/ralph-claude-code#100
    ("usage", "Claude AI usage limit reached|1767225600", "claude"),  # REAL-AGENTS (print mode)
    ("usage", "You've hit your usage limit. Upgrade to Pro (https://openai.com/chatgpt/pricing) or try again in "
              "2 days 17 hours 14 minutes.", "codex"),  # REAL-AGENTS; seen: openai/codex#3124
    ("usage", "You've hit your usage limit. Try again at 6:44 PM.", "codex"),  # REAL-AGENTS (Codex)
    ("usage", "You've hit your usage limit. Try again in less than a minute.", "codex"),  # REAL-AGENTS (Codex)
    ("usage", "You're out of extra usage · resets Feb 4, 8pm (Europe/Budapest)", "claude"),  # seen: claude-code#22603
    ("usage", "You're out of usage credits · resets Oct 3, 9am (UTC)", "claude"),  # seen: 2.1.283 bundle
    ("usage", "Opus weekly limit reached ∙ resets Oct 31, 9am", "claude"),  # seen: claude-code#10333
    ("usage", "Session limit reached ∙ resets 8pm", "claude"),  # seen: claude-code#11577
    ("usage", "You’ve hit your limit for Claude messages. Limits will reset at 9:30 AM.", "claude"),  # claude-code#80062
    ("usage", "You've hit your limit · resets 2:10pm (Europe/Moscow)\n"
              'Error: 429 {"type":"error","error":{"type":"rate_limit_error","message":"This request would exceed '
              "your account's rate limit. Please try again later.\"}}", "claude"),  # claude-code#59637: banner + its 429
    ("usage", "● You've hit your Opus limit · resets 8:10pm\n  Switch to another model to keep going", "claude"),
    ("usage", "● Usage limit reached · resets 8:10pm\n  Run /extra-usage to continue now", "claude"),  # fixtures
    ("usage", "● Usage limit reached · resets 8:10pm\n  Continue now at lower priority", "claude"),  # fixtures
    ("usage", "● Usage limit reached · resets 8:10pm\n  Reset your session limit now and keep working", "claude"),
    ("usage", "  ⎿  You've reached your Fable limit · resets 8:10pm (Europe/Berlin)", "claude"),  # 2.1.283 strings
    ("usage", "  ⎿  You've hit your limit · progress saved · resets 8:10pm (Europe/Berlin)", "claude"),  # 2.1.283
    ("usage", "  ⎿  You've hit your session limit · resets 8:10pm (Europe/Berlin)\n"
              "     /upgrade or /usage-credits to finish what you're working on.", "claude"),  # upsell stays usage
    ("usage", "  └ You've hit your session limit · resets 3:20am (Europe/Berlin)\n   ❯ 1. Stop and wait for limit "
              "to reset\n     2. Wait here, then continue automatically at 3:20am", "claude"),  # menu, 2.1.261 screenshot
    ("usage", "■ You've hit your usage limit. Upgrade to Pro (https://chatgpt.com/explore/pro), visit "
              "https://chatgpt.com/codex/settings/usage to purchase more credits or try again at 3:23 PM.", "codex"),
    ("usage", "\u25a0 You\u2019ve hit your usage limit. Upgrade to Pro (https://chatgpt.com/explore/pro), visit", "codex"),
    ("usage", "You've hit your usage limit. To get more access now, send a request to your admin or try again at "
              "3:40 PM.", "codex"),  # codex-rs Team/Business wording: the admin is an option, the wait suffices
    ("usage", "🖐 You've hit your usage limit. Upgrade to Pro (https://openai.com/chatgpt/pricing), or wait for "
              "limits to reset (every 5h and every week.).", "codex"),  # seen: openai/codex#2669
    ("usage", "You've hit your usage limit. Upgrade to Plus to continue using Codex "
              "(https://openai.com/chatgpt/pricing).", "codex"),  # codex-rs Free plan: no time, fallback wait
    ("usage", "You have reached the usage limit. Upgrade or add credits to continue, or try again after "
              "September 6, 2026, 11:15.", "codex"),  # seen: openai/codex#41689
    ("usage", "You’re out of Codex messages\nYour rate limit resets on Apr 25, 2026, 12:54 AM.", "codex"),  # codex#19417
    # Seen: fixtures. "Redeem usage limit reset" is Codex's reset-credit action (openai/codex#30488): never automated.
    ("usage", "▌ Usage limit reached\n  Redeem usage limit reset", "codex"),
    ("usage", '{"error":{"type":"usage_limit_reached","message":"The usage limit has been reached",'
              '"resets_at":1775317531}}', "codex"),  # seen: james-6-23/codex2api#9
    ("usage", "Approaching usage limit · resets at 2am\nYou've hit your session limit · resets 2am", "claude"),
    # --- retrying: the CLI resumes or retries by itself ----------------------------------------
    ("retrying", "Continuing automatically when your limit resets", "claude"),  # REAL-AGENTS
    ("retrying", "● Usage limit reached · resets 8:10pm\n  Continuing automatically when your limit resets", "claude"),
    ("retrying", "Usage limit reached · continuing automatically at 3:40pm · esc to cancel", "claude"),  # 2.1.234
    ("retrying", "Usage limit reached · continuing automatically when it resets · esc to cancel", "claude"),  # 2.1.234
    ("retrying", "  ⚠ Usage limit reached · continuing shortly · esc to cancel", "claude"),  # live 2.1.278 fixture
    ("retrying", "  ⎿  Claude Code will continue automatically shortly. Keep this session open; it may still "
                 "pause for permission prompts.", "claude"),  # seen: live 2.1.278 fixture
    ("retrying", "429 Rate limited · retrying in 3s · attempt 4/10", "claude"),  # REAL-AGENTS, fixture 08
    ("retrying", "✻ 529 Overloaded · Retrying in 4s · attempt 6/10", "claude"),  # seen: claude-code#91817
    ("retrying", '⎿  API Error (529 {"type":"error","error":{"type":"overloaded_error","message":"Overloaded"}}) · '
                 "Retrying in 1 seconds… (attempt 1/10)", "claude"),  # seen: claude-code#3558
    ("retrying", 'API Error (429 {"type":"error","error":{"type":"rate_limit_error"}}) · Retrying in 2892 seconds… '
                 "(attempt 1/10)", "claude"),  # seen: Wei-Shaw/claude-relay-service#56
    ("retrying", "Reconnecting... 4/5 (21s • esc to interrupt)", "codex"),  # seen: openai/codex#19121
    ("retrying", "Re-connecting... 1/5 (7s • esc to interrupt)", "codex"),  # seen: openai/codex#6191
    # --- rate: retry soon -------------------------------------------------------------------
    ("rate", "API Error: Request rejected (429) · Rate limited. Please try again later.", "claude"),  # claude-code#69023
    ("rate", 'API Error: 529 {"type":"error","error":{"type":"overloaded_error","message":"Overloaded"},'
             '"request_id":"req_011CXnukXFhq5zC25S7ev2cy"}', "claude"),  # seen: claude-code#23049, #35801
    ("rate", "⎿  API Error: Repeated 529 Overloaded errors", "claude"),  # seen: lbjlaq/Antigravity-Manager#112
    ("rate", 'Error: 429 {"type":"error","error":{"type":"rate_limit_error","message":"This request would exceed '
             "your account's rate limit. Please try again later.\"}}", "claude"),  # seen: many claude-code issues
    ("", "rate_limit_error", "claude"),  # REAL-AGENTS (a word of the 429 body): alone, no banner
    ("", "overloaded_error", "claude"),  # REAL-AGENTS (a word of the 529 body): alone, no banner
    ("", "Overloaded", "claude"),
    ("rate", "■ exceeded retry limit, last status: 429 Too Many Requests", "codex"),  # seen: a public fixture
    ("rate", "rate limited (status 429 Too Many Requests), retry after 3s", "codex"),  # codex-rs RateLimitedError
    ("rate", "We're currently experiencing high demand, which may cause temporary errors.", "codex"),  # codex-rs
    # --- manual: report, never automate --------------------------------------------------------
    ("manual", "You've hit your monthly spend limit · raise it at claude.ai/settings/usage?from=cc_cli_limit_message",
     "claude"),
    ("manual", "You've hit your monthly spend limit · your session limit resets 2:40pm (Asia/Jakarta)",
     "claude"),  # seen: claude-code#91376
    ("manual", "  ⎿  **You've hit your monthly spend limit.**\n     /usage-credits to adjust your monthly spend "
               "limit.", "claude"),  # seen: claude-code#67579
    ("manual", "● You've hit your monthly spend limit. Run /usage-credits to manage your limit", "claude"),  # fixtures
    ("manual", "You've hit your org's monthly spend limit · run /usage-credits to raise it, or visit "
               "claude.ai/admin-settings/usage", "claude"),  # seen: cheapestinference/claude-auto-retry tests (#71)
    ("manual", "  ⎿  You've hit your usage credit limit", "claude"),  # seen: 2.1.283 strings, as are the next eleven
    ("manual", "  ⎿  You're out of usage credits. /model to switch models.", "claude"),
    ("manual", "  ⎿  You're out of extra usage", "claude"),
    ("manual", "  ⎿  Fable 5 requires usage credits.", "claude"),
    ("manual", "  ⎿  You've hit your org's monthly spend limit · ask your admin for a higher limit", "claude"),
    ("manual", "  ⎿  You've hit your channel's monthly usage limit", "claude"),
    ("manual", "  ⎿  You've hit your team's shared budget. /model to switch models.", "claude"),
    ("manual", "  ⎿  You've hit your individual usage limit · ask your admin for a higher limit", "claude"),
    ("manual", "  ⎿  Your org is out of usage · add funds to continue", "claude"),
    ("manual", "  ⎿  Your seat type doesn't include usage credits", "claude"),
    ("manual", "  ⎿  Your usage allocation has been disabled by your admin", "claude"),
    ("manual", "  ⎿  Your group's usage limit is set to $0", "claude"),
    ("manual", "You're out of credits.", "codex"),  # REAL-AGENTS (Codex)
    ("manual", "▌ You're out of credits. Your workspace is out of credits. Add credits to continue.", "codex"),
    ("manual", "Your workspace is out of credits. Add credits to continue.", "codex"),  # seen: openai/codex#26280
    ("manual", "  ⎿  Credit balance too low · Add funds: https://platform.claude.com/settings/billing",
     "claude"),  # seen: claude-code#46277
    ("manual", "Your credit balance is too low to access the Anthropic API. Please go to Plans & Billing to "
               "upgrade or purchase credits.", "claude"),  # seen: claude-code#55469
    ("manual", "You have reached your specified workspace API usage limits. You will regain access on 2025-06-01 "
               "at 00:00 UTC.", "claude"),  # seen: claude-code#1047
    ("manual", "Quota exceeded. Check your plan and billing details.", "codex"),  # codex-rs
    ("manual", "To use Codex with your ChatGPT plan, upgrade to Plus: https://openai.com/chatgpt/pricing.", "codex"),
    # --- not a limit ---------------------------------------------------------------------------
    ("", "Usage limit has reset · press enter to continue", "claude"),  # REAL-AGENTS: the ready line (a dialog)
    ("", "Your usage limit has reset · press enter to continue", "claude"),  # 2.1.234 strings
    ("", "  ⎿  You've hit your session limit · resets 8:10pm (Europe/Berlin)\n\n✳ Crunched for 0s · done 7:31 PM\n\n"
         "● Usage limit has reset · press enter to continue", "claude"),  # stale banner above the ready line
    ("", "⏺ Approaching your 5-hour usage limit — Claude will wrap up the current step.", "claude"),  # auto-retry#78
    ("", "Boom! Approaching usage limit resets at 2am.", "claude"),  # seen: github/spec-kit#693
    ("", "Approaching Opus usage limit", "claude"),  # seen: claude-code#8835
    ("", "Approaching weekly limit", "claude"),  # seen: Haleclipse/CCometixLine#54 (a Claude status line)
    ("", "▌ Approaching rate limits", "codex"),  # seen: fixtures (Codex)
    ("", "Heads up, you've used over 90% of your weekly limit. Run /status for a breakdown.", "codex"),  # codex#7464
    ("", "You've hit your fast limit", "claude"),  # fast mode switches off; the session goes on
    ("", "■ exceeded retry limit, last status: 401 Unauthorized, request id: 99927d40789dcbd0-MAD", "codex"),  # #6191
    ("", "■ stream disconnected before completion: error sending request for url "
         "(https://chatgpt.com/backend-api/codex/responses)", "codex"),  # seen: openai/codex#13811
    ("", "API Error: Claude Code is unable to respond to this request, which appears to violate our Usage Policy",
     "claude"),
    ("", "Automatic continue cancelled · /rate-limit-options to re-arm", "claude"),
    ("", "  Opus 5 ctx:28% 5h:19% reset:4h51m", "claude"),
    ("", "  gpt-5-codex high · ~/project · 67% used · resets 3:23 PM", "codex"),
    ("", "● Reading src/main.py", "claude"),
    ("", "I can help you with that code", "claude"),
    ("", "", "claude"),
]

RULE = "─" * 80
CLAUDE_FOOTER = "  ⏵⏵ bypass permissions on (shift+tab to cycle)"
READY_LINE = re.compile(r"usage limit has reset · press enter to continue", re.IGNORECASE)
#: Marks the CLIs print before a notice; stripped from a banner before an agent quotes it.
MARKS = " ●⎿✻⏺•*└■▌🖐⚠"


def backend(name):
    return ag.Loader(Path("/nonexistent/agents.toml")).load_backends({})[name]


def pane():
    return ag.Pane(session="s", pane_id="%1", pid=1, dead=False, dead_status=None, activity=NOW, created=NOW,
                   in_mode=False, owner="", width=120, height=40)


def screen_of(cli, banner_lines, busy=False):
    """``banner_lines`` at the bottom of a realistic screen of ``cli``."""
    if cli == "claude":
        footer = CLAUDE_FOOTER + (" · esc to interrupt" if busy else "")
        return ["● Done: the tests pass.", "", *banner_lines, "", RULE, "❯ ", RULE, footer]
    return ["• Done: the tests pass.", "", *banner_lines, "", "› ", ""]


def classify(cli, banner_lines, busy=False):
    return ag.read_screen(backend(cli), pane(), screen_of(cli, banner_lines, busy), NOW)


def row_id(param):
    expected, banner, cli = param.values if hasattr(param, "values") else param
    return f"{cli}-{expected or 'none'}-{banner.splitlines()[0][:40] if banner else 'empty'}"


IDS = [row_id(row) for row in BANNERS]


@pytest.mark.parametrize("expected, banner, cli", BANNERS, ids=IDS)
def test_banner_reads_as_its_kind(expected, banner, cli):
    screen = classify(cli, banner.split("\n"))
    if expected:
        assert (screen.state, screen.limit_kind) == ("limited", expected), screen
    elif READY_LINE.search(banner.split("\n")[-1]):
        assert screen.state == "dialog", screen  # the ready line waits for Enter
        assert ag.dialog_answer(backend(cli), screen) == ["Enter"]
    else:
        assert screen.state == "idle", screen


RETRYING = [row for row in BANNERS if not hasattr(row, "marks") and row[0] == "retrying"]


@pytest.mark.parametrize("expected, banner, cli", RETRYING, ids=[row_id(row) for row in RETRYING])
def test_self_retry_outranks_the_busy_footer(expected, banner, cli):
    # While Claude retries by itself its footer says "esc to interrupt" (Codex's retry line carries it
    # already): still limited/retrying, so the supervisor stands down rather than calling it busy work.
    screen = classify(cli, banner.split("\n"), busy=True)
    assert (screen.state, screen.limit_kind) == ("limited", "retrying"), screen


def quotes(banner, cli):
    """The banner as an agent's reply would quote it: inside a sentence, and in a markdown list item."""
    text = " ".join(line.strip() for line in banner.split("\n") if line.strip()).lstrip(MARKS)
    bullet = "●" if cli == "claude" else "•"
    return [
        [f'{bullet} The CLI said "{text}" earlier.'],
        [f"{bullet} When the quota is gone it prints:", f"  - `{text}` (then it stops)"],
        [f"{bullet} I saw this in the logs: {text}"],
    ]


#: Every row without its marks: a quoted fragment is not a limit either.
PLAIN_ROWS = [row.values if hasattr(row, "values") else row for row in BANNERS]


@pytest.mark.parametrize("expected, banner, cli", PLAIN_ROWS, ids=IDS)
def test_quoted_banner_is_not_a_limit(expected, banner, cli):
    for lines in quotes(banner, cli):
        screen = classify(cli, lines)
        # Never limited, never a dialog (a quoted ready line must not be answered with Enter). A quoted
        # Codex "… esc to interrupt" reads as busy, which is harmless.
        assert screen.state in ("idle", "busy"), (lines, screen)


def test_table_is_complete():
    rows = PLAIN_ROWS
    assert len(rows) == 101  # every row of the collected table
    assert {cli for _, _, cli in rows} == {"claude", "codex"}
    assert {kind for kind, _, _ in rows} == {"usage", "retrying", "rate", "manual", ""}
