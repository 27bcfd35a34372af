//! A set of rows bound as one relation, for the set-based write paths: on PostgreSQL `UNNEST` of
//! one array per column, so a statement has one text whatever its row count (one prepared
//! statement per kind, planned once instead of once per row count: issue 20 measured that
//! planning at about a quarter of PostgreSQL's time under W4); on SQLite, which binds no arrays, a
//! `VALUES` list. Either goes where a query can: `WITH k(a, b) AS (<rows>)`,
//! `INSERT INTO t (a, b) <rows>`, `x IN (<rows>)`.

use sqlx::QueryBuilder;

/// One column of a [`RowSet`].
#[derive(Debug)]
pub(super) enum Column {
    /// `BIGINT` (ids, seqs, times, small enums: PostgreSQL casts them on insert).
    Int(Vec<i64>),
    /// A nullable `BIGINT`.
    OptInt(Vec<Option<i64>>),
    /// `TEXT`.
    Text(Vec<String>),
}

impl Column {
    fn len(&self) -> usize {
        match self {
            Self::Int(v) => v.len(),
            Self::OptInt(v) => v.len(),
            Self::Text(v) => v.len(),
        }
    }
}

/// Rows as columns of equal length; never empty (neither `VALUES` nor a caller's `IN` takes none).
#[derive(Debug)]
pub(super) struct RowSet(Vec<Column>);

impl RowSet {
    /// The rows made of `columns`; `None` when there are none or the columns differ in length.
    pub(super) fn new(columns: Vec<Column>) -> Option<Self> {
        let n = columns.first()?.len();
        (n > 0 && columns.iter().all(|c| c.len() == n)).then_some(Self(columns))
    }

    /// Pushes the relation onto `q` as backend `DB` writes it.
    pub(super) fn push<DB: PushRows>(self, q: &mut QueryBuilder<DB>) {
        DB::push_rows(q, self.0);
    }
}

/// How a backend writes a [`RowSet`].
pub(super) trait PushRows: sqlx::Database {
    fn push_rows(q: &mut QueryBuilder<Self>, columns: Vec<Column>);
}

impl PushRows for sqlx::Postgres {
    fn push_rows(q: &mut QueryBuilder<Self>, columns: Vec<Column>) {
        q.push("SELECT * FROM UNNEST(");
        for (i, c) in columns.into_iter().enumerate() {
            if i > 0 {
                q.push(", ");
            }
            match c {
                Column::Int(v) => q.push_bind(v).push("::INT8[]"),
                Column::OptInt(v) => q.push_bind(v).push("::INT8[]"),
                Column::Text(v) => q.push_bind(v).push("::TEXT[]"),
            };
        }
        q.push(")");
    }
}

impl PushRows for sqlx::Sqlite {
    fn push_rows(q: &mut QueryBuilder<Self>, columns: Vec<Column>) {
        let n = columns.first().map_or(0, Column::len);
        let mut columns: Vec<std::vec::IntoIter<Cell>> = columns.into_iter().map(cells).collect();
        q.push("VALUES ");
        for row in 0..n {
            if row > 0 {
                q.push(", ");
            }
            q.push("(");
            for (i, col) in columns.iter_mut().enumerate() {
                if i > 0 {
                    q.push(", ");
                }
                match col.next() {
                    Some(Cell::Int(v)) => q.push_bind(v),
                    Some(Cell::OptInt(v)) => q.push_bind(v),
                    Some(Cell::Text(v)) => q.push_bind(v),
                    None => q.push("NULL"),
                };
            }
            q.push(")");
        }
    }
}

/// One value of a row, for backends that bind values one by one.
enum Cell {
    Int(i64),
    OptInt(Option<i64>),
    Text(String),
}

fn cells(c: Column) -> std::vec::IntoIter<Cell> {
    let v: Vec<Cell> = match c {
        Column::Int(v) => v.into_iter().map(Cell::Int).collect(),
        Column::OptInt(v) => v.into_iter().map(Cell::OptInt).collect(),
        Column::Text(v) => v.into_iter().map(Cell::Text).collect(),
    };
    v.into_iter()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rows() -> RowSet {
        RowSet::new(vec![
            Column::Int(vec![1, 2]),
            Column::OptInt(vec![None, Some(5)]),
            Column::Text(vec!["a".into(), "b'c".into()]),
        ])
        .expect("rows")
    }

    #[test]
    fn one_statement_text_on_postgres_whatever_the_row_count() {
        let mut q = QueryBuilder::<sqlx::Postgres>::new("WITH k(a, b, c) AS (");
        rows().push(&mut q);
        q.push(") SELECT * FROM k");
        assert_eq!(
            q.sql().as_str(),
            "WITH k(a, b, c) AS (SELECT * FROM UNNEST($1::INT8[], $2::INT8[], $3::TEXT[])) SELECT * FROM k"
        );
        assert!(RowSet::new(vec![Column::Int(vec![]), Column::Int(vec![])]).is_none(), "no rows");
        assert!(RowSet::new(vec![Column::Int(vec![1]), Column::Int(vec![1, 2])]).is_none(), "ragged");
    }

    #[tokio::test]
    async fn sqlite_reads_the_same_rows_from_a_values_list() {
        let pool = sqlx::SqlitePool::connect("sqlite::memory:").await.expect("sqlite");
        let mut q = QueryBuilder::<sqlx::Sqlite>::new("WITH k(a, b, c) AS (");
        rows().push(&mut q);
        q.push(") SELECT a, b, c FROM k ORDER BY a");
        assert_eq!(
            q.sql().as_str(),
            "WITH k(a, b, c) AS (VALUES (?, ?, ?), (?, ?, ?)) SELECT a, b, c FROM k ORDER BY a"
        );
        let got: Vec<(i64, Option<i64>, String)> = q.build_query_as().fetch_all(&pool).await.expect("query");
        assert_eq!(got, vec![(1, None, "a".into()), (2, Some(5), "b'c".into())]);
    }
}
