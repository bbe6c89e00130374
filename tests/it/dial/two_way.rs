//! Requests both ways on one link: the node that dialed and the node that
//! accepted each send requests on the same connection. Each side numbers
//! its own (odd: dialed, even: accepted), so a request of one is never
//! taken for the reply to a request of the other.

use crossbeam_channel::unbounded;
use netloom::{Context, SeqPacker, Server};

use crate::common::{start, TIMEOUT};

/// The accepting node answers the dialer's request (id 2) only after
/// asking the dialer something itself (id 1) on the same connection,
/// while the dialer's request is still waiting. Had both numbered from
/// the same counter, the accepting node's first request would carry the
/// dialer's waiting sequence number and be delivered as its reply.
#[test]
fn both_ends_of_a_link_request_at_once_and_each_reply_finds_its_request() {
    let (asked_tx, asked) = unbounded();
    let acceptor = start(Server::builder().packer(SeqPacker::default()).route(
        2,
        move |ctx: &mut Context<'_>| {
            let responder = ctx.responder();
            let asked_tx = asked_tx.clone();
            let question = format!("what about {}?", String::from_utf8_lossy(ctx.body()));
            let sent = ctx
                .handle()
                .request_with(1, question, TIMEOUT, move |reply| {
                    let answer = match reply {
                        Ok(m) => m.body.to_vec(),
                        Err(e) => format!("no answer: {e}").into_bytes(),
                    };
                    let _ = asked_tx.send(answer.clone());
                    let _ = responder.respond(2, [&b"you said: "[..], &answer].concat());
                });
            sent.expect("the acceptor's request");
        },
    ));
    let dialer = start(Server::builder().packer(SeqPacker::default()).route(
        1,
        |ctx: &mut Context<'_>| {
            let answer = [&b"answer to "[..], ctx.body()].concat();
            ctx.reply(1, answer)
        },
    ));
    let link = dialer.hub().connect(acceptor.local_addr()).unwrap();
    for round in 0..20 {
        let body = format!("x{round}");
        let reply = link
            .request(2, &body, TIMEOUT)
            .unwrap()
            .wait()
            .unwrap_or_else(|e| panic!("round {round}: {e}"));
        let answer = format!("answer to what about {body}?");
        assert_eq!(
            asked.recv_timeout(TIMEOUT).unwrap(),
            answer.as_bytes(),
            "round {round}: the acceptor's request was answered by the dialer's route"
        );
        assert_eq!(
            (reply.id, &reply.body[..]),
            (2, format!("you said: {answer}").as_bytes()),
            "round {round}: the dialer's reply"
        );
        assert_eq!(reply.seq % 2, 1, "the dialer numbers odd");
    }
    dialer.shutdown(TIMEOUT).unwrap();
    acceptor.shutdown(TIMEOUT).unwrap();
}
