"""What `readonly=1` does not refuse in an embedded engine, refused before a query runs.

The engine is `clickhouse-local` inside this process (chdb). `readonly=1` refuses writes,
DDL, `SET`, and table functions that reach files or the network; but a local engine also
allows, in readonly mode:

- `KILL QUERY` / `KILL MUTATION` — which would stop the flow's own inserts — and
  `SYSTEM STOP MERGES` (the whole engine's), which would let parts pile up until inserts
  fail: only reading statements run (SELECT, WITH, SHOW, DESCRIBE, EXPLAIN, EXISTS; SET and
  USE go on to the engine, which refuses a changed setting and scopes USE to the request);
- `SELECT ... INTO OUTFILE` — which writes a file of the server (a ClickHouse server refuses
  it over HTTP, INTO_OUTFILE_NOT_ALLOWED);
- the `file()` function — which reads any file of the server (a server confines it to
  `user_files_path`);
- several statements in one request (`SELECT 1; KILL QUERY ...`), which the HTTP interface
  of a server refuses.

These are judged on the engine's own rendering of the query (`formatQuerySingleLine`), not
on the raw text: the engine has parsed it, so comments (nested ones too), heredocs, quoted
and escaped names (`` `fi\\x6ce`(...) ``) have all been resolved, and a text it cannot
parse as one statement never runs. This module scans that canonical text.
"""

from __future__ import annotations

from dataclasses import dataclass

from api.clickhouse_http import errors
from api.clickhouse_http.errors import ClickHouseError

# First words of the statements that only read (as the engine renders them: DESC is DESCRIBE).
READING_STATEMENTS = frozenset({"SELECT", "WITH", "SHOW", "DESCRIBE", "EXPLAIN", "EXISTS", "SET", "USE"})
_ESCAPES = {"n": "\n", "t": "\t", "r": "\r", "0": "\0", "b": "\b", "f": "\f", "a": "\a", "v": "\v", "e": "\x1b"}


@dataclass(frozen=True)
class Token:
    kind: str  # "word" (bare name, keyword, number), "name" (quoted identifier), "string", "param", "punct"
    text: str  # a quoted identifier unescaped; a string literal raw

    def is_name(self, value: str) -> bool:
        return self.kind in ("word", "name") and self.text == value

    def is_keyword(self, value: str) -> bool:
        return self.kind == "word" and self.text.upper() == value


def _quoted(text: str, start: int, quote: str) -> tuple[str, int]:
    """The unescaped content of a quoted token starting at `start`, and the index after it."""
    out: list[str] = []
    i = start + 1
    while i < len(text):
        ch = text[i]
        if ch == "\\" and i + 1 < len(text):
            nxt = text[i + 1]
            if nxt == "x" and i + 3 < len(text):
                try:
                    out.append(chr(int(text[i + 2 : i + 4], 16)))
                    i += 4
                    continue
                except ValueError:
                    pass
            out.append(_ESCAPES.get(nxt, nxt))
            i += 2
        elif ch == quote:
            if i + 1 < len(text) and text[i + 1] == quote:
                out.append(quote)
                i += 2
            else:
                return "".join(out), i + 1
        else:
            out.append(ch)
            i += 1
    return "".join(out), i  # unterminated: the rest (the engine would not have printed this)


def tokens(text: str) -> list[Token]:
    """The tokens of a canonical query text."""
    out: list[Token] = []
    i = 0
    while i < len(text):
        ch = text[i]
        if ch.isspace():
            i += 1
        elif ch == "'":
            value, i = _quoted(text, i, "'")
            out.append(Token("string", value))
        elif ch in '`"':
            value, i = _quoted(text, i, ch)
            out.append(Token("name", value))
        elif ch == "{":
            end = text.find("}", i)
            end = len(text) if end < 0 else end + 1
            out.append(Token("param", text[i:end]))
            i = end
        elif ch.isalnum() or ch in "_$":
            j = i + 1
            while j < len(text) and (text[j].isalnum() or text[j] in "_$."):
                if text[j] == "." and not (j + 1 < len(text) and text[j + 1].isdigit() and text[i].isdigit()):
                    break
                j += 1
            out.append(Token("word", text[i:j]))
            i = j
        else:
            out.append(Token("punct", ch))
            i += 1
    return out


def check(canonical: str) -> None:
    """Raise the refusal for a canonical query text that readonly mode would let through."""
    toks = tokens(canonical)
    if toks and toks[0].kind == "word" and toks[0].text.upper() not in READING_STATEMENTS:
        raise errors.readonly(
            f"Cannot execute query in readonly mode: {toks[0].text.upper()} is not a reading statement; "
            "the SQL interface runs SELECT, WITH, SHOW, DESCRIBE, EXPLAIN and EXISTS"
        )
    for a, b in zip(toks, toks[1:]):
        if a.is_keyword("INTO") and b.is_keyword("OUTFILE"):
            raise ClickHouseError(
                errors.INTO_OUTFILE_NOT_ALLOWED,
                "INTO OUTFILE is not allowed: it writes a file on the server; results come back in the HTTP response",
                "INTO_OUTFILE_NOT_ALLOWED",
            )
        if a.is_name("file") and b.kind == "punct" and b.text == "(":
            raise ClickHouseError(
                errors.FUNCTION_NOT_ALLOWED,
                "Function file() is not allowed: it reads files of the server; query the tables instead",
                "FUNCTION_NOT_ALLOWED",
            )


def output_format(canonical: str) -> str | None:
    """The name in the query's own top-level `FORMAT <name>` clause, if it has one."""
    toks = tokens(canonical)
    depth = 0
    found = None
    for i, tok in enumerate(toks):
        if tok.kind == "punct" and tok.text == "(":
            depth += 1
        elif tok.kind == "punct" and tok.text == ")":
            depth -= 1
        elif depth == 0 and tok.is_keyword("FORMAT") and i + 1 < len(toks) and toks[i + 1].kind in ("word", "name"):
            found = toks[i + 1].text
    return found
