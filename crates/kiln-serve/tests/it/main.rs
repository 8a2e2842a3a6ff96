mod oip;
mod scoring;
