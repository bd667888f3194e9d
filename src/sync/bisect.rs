//! Isolating the rows MySQL refuses: a batch rejected for its content is
//! split in halves, recursively, until the bad rows stand alone; every other
//! slice commits. With `b` bad rows in a batch of `n` this costs about
//! `2 b log2(n)` extra transactions, and a clean batch costs exactly one.
//!
//! Pure control flow over two callbacks, so it is tested without a server.

/// Commits one slice atomically (and records it as done), or says why not.
pub type Commit<'a, T, E> = dyn FnMut(&[T]) -> Result<(), Attempt<E>> + 'a;

/// Why one attempt to commit a slice failed.
#[derive(Debug)]
pub enum Attempt<E> {
    /// The server refused the rows themselves (with its message): split and retry.
    Content(String),
    /// Anything else (connection lost, server down): stop, retry the rest later.
    Fatal(E),
}

/// What [`commit_isolating`] did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Isolated {
    /// Rows committed.
    pub committed: usize,
    /// Rows rejected on their own and handed to `reject`.
    pub rejected: usize,
    /// Commit attempts made (1 for a clean batch).
    pub attempts: usize,
}

/// Commits `rows` through `commit` (which must commit a slice atomically and, on success,
/// record it as done), splitting any slice refused for its content; a single refused row
/// goes to `reject` with the server's message. Stops at the first fatal error; slices
/// committed before it stay committed (and recorded by `commit`).
pub fn commit_isolating<T, E>(
    rows: &[T],
    commit: &mut Commit<'_, T, E>,
    reject: &mut dyn FnMut(&T, String) -> Result<(), E>,
) -> Result<Isolated, E> {
    let mut done = Isolated::default();
    go(rows, commit, reject, &mut done)?;
    Ok(done)
}

fn go<T, E>(
    rows: &[T],
    commit: &mut Commit<'_, T, E>,
    reject: &mut dyn FnMut(&T, String) -> Result<(), E>,
    done: &mut Isolated,
) -> Result<(), E> {
    if rows.is_empty() {
        return Ok(());
    }
    done.attempts += 1;
    match commit(rows) {
        Ok(()) => {
            done.committed += rows.len();
            Ok(())
        }
        Err(Attempt::Fatal(e)) => Err(e),
        Err(Attempt::Content(message)) => {
            if let [row] = rows {
                reject(row, message)?;
                done.rejected += 1;
                Ok(())
            } else {
                let (left, right) = rows.split_at(rows.len() / 2);
                go(left, commit, reject, done)?;
                go(right, commit, reject, done)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A fake server: refuses any slice holding a negative row; fails fatally on attempt `die_at`.
    fn run(rows: &[i32], die_at: Option<usize>) -> (Result<Isolated, String>, Vec<i32>, Vec<i32>) {
        let mut committed = Vec::new();
        let mut rejected = Vec::new();
        let mut attempt = 0;
        let result = commit_isolating(
            rows,
            &mut |slice: &[i32]| {
                attempt += 1;
                if Some(attempt) == die_at {
                    return Err(Attempt::Fatal("connection lost".to_string()));
                }
                match slice.iter().find(|r| **r < 0) {
                    Some(bad) => Err(Attempt::Content(format!("bad row {bad}"))),
                    None => {
                        committed.extend_from_slice(slice);
                        Ok(())
                    }
                }
            },
            &mut |row: &i32, message: String| {
                assert_eq!(message, format!("bad row {row}"));
                rejected.push(*row);
                Ok(())
            },
        );
        (result, committed, rejected)
    }

    #[test]
    fn a_clean_batch_commits_in_one_attempt() {
        let rows: Vec<i32> = (1..=100).collect();
        let (result, committed, rejected) = run(&rows, None);
        let done = result.unwrap();
        assert_eq!(
            done,
            Isolated {
                committed: 100,
                rejected: 0,
                attempts: 1
            }
        );
        assert_eq!(committed, rows);
        assert!(rejected.is_empty());
    }

    #[test]
    fn bad_rows_are_isolated_and_every_good_row_commits_once_in_order() {
        let mut rows: Vec<i32> = (1..=1000).collect();
        rows[17] = -18;
        rows[500] = -501;
        rows[999] = -1000;
        let (result, committed, rejected) = run(&rows, None);
        let done = result.unwrap();
        assert_eq!(rejected, vec![-18, -501, -1000]);
        let good: Vec<i32> = rows.iter().copied().filter(|r| *r > 0).collect();
        assert_eq!(committed, good);
        assert_eq!(done.committed + done.rejected, 1000);
        // About 2 * 3 * log2(1000) attempts, not 1000.
        assert!(done.attempts <= 60, "{done:?}");
    }

    #[test]
    fn a_batch_of_only_bad_rows_rejects_each_and_ends() {
        let (result, committed, rejected) = run(&[-1, -2, -3], None);
        assert_eq!(result.unwrap().rejected, 3);
        assert!(committed.is_empty());
        assert_eq!(rejected, vec![-1, -2, -3]);
    }

    #[test]
    fn a_fatal_error_mid_bisect_stops_and_keeps_what_committed() {
        let mut rows: Vec<i32> = (1..=8).collect();
        rows[7] = -8;
        // Attempt 1: whole batch refused; 2: left half commits; 3: right half refused; 4: dies.
        let (result, committed, rejected) = run(&rows, Some(4));
        assert_eq!(result.unwrap_err(), "connection lost");
        assert_eq!(committed, vec![1, 2, 3, 4]);
        assert!(rejected.is_empty());
    }
}
