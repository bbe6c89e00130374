//! Unit tests of a lane's order of work.

use bytes::Bytes;

use super::{next, Next, MAX_TASK_ITEMS};
use crate::id::ConnId;
use crate::runtime::exec::{Item, Lanes, Queued, Target};

/// A run of off-loop items goes to its executor as tasks of at most
/// `MAX_TASK_ITEMS`, each counting what its items hold (found by mutation
/// testing: a task of one item more, or counting nothing, passed).
#[test]
fn a_run_for_an_executor_goes_in_tasks_of_64_with_their_cost() {
    let me = ConnId::new(1, 0, 1, 1);
    let mut lanes = Lanes::default();
    for seq in 0..100 {
        let item = Item::Message {
            id: 1,
            seq,
            body: Bytes::new(),
        };
        let target = Target::Pool;
        lanes.push(
            me,
            Queued {
                item,
                target,
                cost: 10,
            },
        );
    }
    for want in [MAX_TASK_ITEMS, 100 - MAX_TASK_ITEMS] {
        match next(&mut lanes, me) {
            Next::Off(Target::Pool, items, held) => {
                assert_eq!((items.len(), held), (want, 10 * want));
            }
            _ => panic!("not a task for the pool"),
        }
    }
    assert!(matches!(next(&mut lanes, me), Next::Empty));
}
