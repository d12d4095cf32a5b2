//! The CPU variant run-time dispatch chooses must run on this machine: ggml's AMX kernels fault
//! on machines that report AMX (a Sapphire Rapids VM), so the AMX variant is passed over unless
//! MINERVA_CPU_AMX=1.

mod common;

use minerva::engine::Status;

#[test]
fn the_chosen_cpu_variant_generates() {
    let _one = common::one_at_a_time();
    let e = common::engine(1, 128);
    let variant = e.info().cpu_variant.clone();
    println!("CPU variant: {variant}");
    if cfg!(feature = "portable") && std::env::var("MINERVA_CPU_AMX").as_deref() != Ok("1") {
        assert!(
            !variant.contains("AMX") && !variant.contains("sapphirerapids"),
            "{variant}"
        );
    }
    // A prompt long enough for the batched matrix kernels, then generation.
    let prompt = "The lighthouse keeper climbed the stairs. ".repeat(12);
    let s = e.start(&prompt, common::greedy(8), None, None).unwrap();
    let text = common::read_all(&s);
    assert_eq!(s.wait(None), Status::Ok, "{}", s.error());
    assert!(!text.is_empty());
}
