"""Computes CPace runs with the `cpace` package that aiosendspin uses, for
comparison with resonate's own CPace.

Reads one JSON object per line on stdin, with hex fields password,
channel_id, sid, initiator_ad, responder_ad, initiator_scalar and
responder_scalar, and prints one JSON object per line with the hex of
both shares, the ISK and both confirmation tags.
"""

import json
import sys

import cpace


def run(case: dict) -> dict:
    fields = {name: bytes.fromhex(value) for name, value in case.items()}
    sides = {}
    for role, name in ((cpace.CPaceRole.INITIATOR, "initiator"), (cpace.CPaceRole.RESPONDER, "responder")):
        generator = cpace._calculate_generator(fields["password"], fields["channel_id"], fields["sid"])
        share = cpace._scalar_mult_vfy(fields[f"{name}_scalar"], generator)
        sides[name] = cpace.CPace(
            role=role,
            sid=fields["sid"],
            ad=fields[f"{name}_ad"],
            scalar=fields[f"{name}_scalar"],
            public_share=share,
        )
    initiator, responder = sides["initiator"], sides["responder"]
    initiator.derive(responder.public_share, fields["responder_ad"])
    responder.derive(initiator.public_share, fields["initiator_ad"])
    return {
        "initiator_share": initiator.public_share.hex(),
        "responder_share": responder.public_share.hex(),
        "isk": initiator.isk.hex(),
        "responder_isk": responder.isk.hex(),
        "initiator_tag": initiator.tag().hex(),
        "responder_tag": responder.tag().hex(),
    }


def main() -> None:
    for line in sys.stdin:
        if line.strip():
            print(json.dumps(run(json.loads(line))), flush=True)


if __name__ == "__main__":
    main()
