"""ORM lookups for DICOM attribute matching (PS3.4 C.2.2.2) that the database can index.

``field__wildcard="DOE*J?HN"`` is single-value matching without wildcards and wildcard matching
with them (``*`` any run of characters, ``?`` one character). The literal text before the first
wildcard also becomes a range condition, so a prefix search walks an index on SQLite as well
(SQLite's LIKE is case-insensitive and does not use a plain index); on PostgreSQL the columns'
``varchar_pattern_ops`` indexes serve LIKE prefixes directly.
"""

from django.db.models import CharField, Lookup

# Above every character that can occur in stored text: "abc" <= s < "abc" + MAX_CHAR is a prefix.
MAX_CHAR = "\U0010ffff"


def has_wildcard(pattern: str) -> bool:
    return "*" in pattern or "?" in pattern


def literal_prefix(pattern: str) -> str:
    cut = min((i for i, c in enumerate(pattern) if c in "*?"), default=len(pattern))
    return pattern[:cut]


def to_like(pattern: str) -> str:
    escaped = pattern.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return escaped.replace("*", "%").replace("?", "_")


@CharField.register_lookup
class Wildcard(Lookup):
    lookup_name = "wildcard"
    prepare_rhs = False

    def as_sql(self, compiler, connection):
        lhs, lhs_params = self.process_lhs(compiler, connection)
        pattern = str(self.rhs)
        if not has_wildcard(pattern):
            return f"{lhs} = %s", [*lhs_params, pattern]
        if pattern.strip("*") == "":
            return "1 = 1", []
        sql = f"{lhs} LIKE %s ESCAPE '\\'"
        params = [*lhs_params, to_like(pattern)]
        prefix = literal_prefix(pattern)
        if prefix and connection.vendor == "sqlite":
            sql = f"{lhs} >= %s AND {lhs} < %s AND {sql}"
            params = [*lhs_params, prefix, *lhs_params, prefix + MAX_CHAR, *params]
        return sql, params
