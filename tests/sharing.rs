//! The sharing policy on a real 3-process cluster: the owner of a compute
//! node comes back mid-job (a fake input device is touched), the node stops
//! its tasks and says it is unavailable, its tasks run elsewhere, the job's
//! result is exact, and the node comes back once the owner is idle again.

mod common;

use std::time::Duration;

use common::*;

fn peer<'a>(status: &'a serde_json::Value, id: &str) -> Option<&'a serde_json::Value> {
    status["peers"]
        .as_array()?
        .iter()
        .find(|p| p["id"].as_str() == Some(id))
}

#[test]
fn the_owner_returning_withdraws_tasks_which_run_elsewhere_and_the_node_comes_back() {
    let community = Community::new();
    let input = community.dir.path().join("fake-input-event0");
    let input_glob = community.dir.path().join("fake-input-event*");
    // The owned node's tasks are held until the test releases them, so the
    // owner surely comes back while one runs there.
    let lib = pausing_executor();
    let pause = Pause::new(&community, "owned");
    pause.hold();
    let procs = start_cluster_with(
        &community,
        &[
            ("client", "client"),
            ("owned", "compute"),
            ("spare", "compute"),
        ],
        |i, _| {
            if i == 1 {
                // 6 s of owner idleness; no input file yet: idle (headless).
                format!(
                    "\n[sharing]\nowner_idle_minutes = 0.1\ninput_devices = [\"{}\"]\n{}",
                    input_glob.display(),
                    pause.executor_config(&lib)
                )
            } else {
                String::new()
            }
        },
    );
    let (client, owned, spare) = (&procs[0], &procs[1], &procs[2]);
    let owned_id = owned.id();
    wait_for(Duration::from_secs(60), || {
        let st = client.status();
        [owned.id(), spare.id()]
            .iter()
            .all(|id| peer(&st, id).is_some_and(|p| p["slots"].as_u64() > Some(0)))
    })
    .expect("the client sees both compute nodes");
    assert_eq!(owned.status()["sharing"]["available"], true);

    let control = client.ports.control_addr().to_string();
    let samples = 2_000_000u64;
    let reference = std::thread::spawn(move || w2_hits_total(200, samples));
    let args = w2_args(200, samples);
    let mut reason = String::new();
    let mut seen_unavailable_by_client = false;
    // Waits for: 20 tasks done (on the spare node), a task held on the
    // owned node, the node's and then the client's view of it going
    // unavailable; then the end of the job and the node coming back.
    let (acted, status, last) = submit_acting_at(&control, &args, 20, || {
        // The owner comes back while a task runs there: one is held.
        assert!(
            pause.wait_until_held(Duration::from_secs(120)),
            "no task held on the owned node"
        );
        // The owner touches the keyboard.
        std::fs::write(&input, b"").unwrap();
        let went = wait_for(Duration::from_secs(60), || {
            owned.status()["sharing"]["available"] == false
        });
        assert!(
            went.is_some(),
            "owned node did not become unavailable:\n{}",
            owned.log_text()
        );
        reason = owned.status()["sharing"]["reason"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        seen_unavailable_by_client = wait_for(Duration::from_secs(60), || {
            // The owner keeps typing until the client has seen it, so the
            // node cannot come back first on a slow machine.
            std::fs::write(&input, b"").unwrap();
            let st = client.status();
            peer(&st, &owned_id)
                .is_some_and(|p| p["idle"] == false && p["slots"].as_u64() == Some(0))
        })
        .is_some();
        // The held task was withdrawn; tasks placed there after the node
        // comes back run at once.
        pause.release();
    });
    assert!(acted, "the job ended before the owner came back");
    assert!(
        reason.contains("owner active"),
        "status says why: {reason:?}"
    );
    assert!(
        seen_unavailable_by_client,
        "the client saw the node as not idle, offering no slots"
    );
    assert!(status.success(), "{last}\n{}", client.log_text());
    assert_eq!(last["event"], "done");
    let hits: u64 = reference.join().unwrap();
    assert!(
        last["result"]
            .as_str()
            .unwrap()
            .contains(&format!("{hits} hits")),
        "{last}"
    );
    // Every task counted once, none failed against the retry budget.
    let done: u64 = tasks_done_by_nodes(&last);
    assert_eq!(done, 200, "{last}");
    assert_eq!(last["progress"]["done"], 200);
    assert_eq!(
        last["progress"]["retries"], 0,
        "a withdrawn task is placed again without counting as a failure: {last}"
    );
    let compute = &owned.status()["compute"];
    assert!(
        compute["tasks_withdrawn"].as_u64().unwrap() >= 1,
        "a task was running on the owned node and was withdrawn: {compute}"
    );

    // The owner leaves; after 6 s without input the node offers itself again.
    let back = wait_for(Duration::from_secs(60), || {
        owned.status()["sharing"]["available"] == true
    });
    assert!(
        back.is_some(),
        "the node never came back:\n{}",
        owned.log_text()
    );
    let seen = wait_for(Duration::from_secs(60), || {
        let st = client.status();
        peer(&st, &owned_id).is_some_and(|p| p["idle"] == true && p["slots"].as_u64() > Some(0))
    });
    assert!(seen.is_some(), "the client sees the node idle again");
    let _ = spare;
}
