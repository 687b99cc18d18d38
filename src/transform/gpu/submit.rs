//! Jobs on the device: fill the upload buffer, record the passes (vertical
//! resize in bands, horizontal resize, orient/quality/pack), submit once,
//! wait for the readback, and return every buffer to the pool; a batch
//! records many jobs into the one submission.

use super::*;

pub(super) struct JobBuffers {
    pub(super) upload: wgpu::Buffer,
    pub(super) input: wgpu::Buffer,
    pub(super) work_a: wgpu::Buffer,
    pub(super) work_b: Option<wgpu::Buffer>,
    pub(super) readback: wgpu::Buffer,
}

/// A job's input: uploaded with it, or read where it is resident.
#[derive(Clone, Copy)]
pub(super) enum Src<'a> {
    /// Pixels uploaded with the job (rows packed, as `SrcAt::Upload`).
    Upload(&'a Pixels),
    /// A resident unit's buffer (`SrcAt::Resident` says where in it).
    Resident(&'a wgpu::Buffer),
}

impl Gpu {
    pub(super) fn run(&self, p: Src<'_>, plan: &JobLayout) -> Result<Vec<u8>, GpuError> {
        let scopes = Scopes::push(&self.device);
        let built = self.encode(p, plan);
        let scoped = scopes.pop();
        let (bufs, index) = match (built, scoped) {
            (Ok(b), Ok(())) => b,
            (Err(e), _) | (Ok(_), Err(e)) => return Err(e),
        };
        let data = self.finish(plan, bufs, index)?;
        Ok(data)
    }

    /// Runs jobs recorded into one submission, waited for once; result `i`
    /// is job `i`'s output bytes. An error while recording or submitting
    /// fails them all.
    pub(super) fn run_many(&self, jobs: &[(Src<'_>, &JobLayout)]) -> Vec<Result<Vec<u8>, GpuError>> {
        let scopes = Scopes::push(&self.device);
        let mut enc =
            self.device.create_command_encoder(&wgpu::CommandEncoderDescriptor { label: Some("tessera batch") });
        let mut recorded = Vec::with_capacity(jobs.len());
        let mut failed = None;
        for (p, plan) in jobs {
            match self.encode_into(&mut enc, *p, plan) {
                Ok(bufs) => recorded.push(bufs),
                Err(e) => {
                    failed = Some(e);
                    break;
                }
            }
        }
        let index = failed.is_none().then(|| self.queue.submit([enc.finish()]));
        let scoped = scopes.pop();
        match (failed, scoped, index) {
            (None, Ok(()), Some(index)) => {
                // The first `finish` waits for the submission; the others
                // find it done and only map their readback. A failed wait
                // (a timeout, a lost device) fails the rest without waiting
                // again for each.
                let mut failed: Option<GpuError> = None;
                jobs.iter()
                    .zip(recorded)
                    .map(|((_, plan), bufs)| match &failed {
                        Some(e) => Err(e.clone()),
                        None => {
                            let out = self.finish(plan, bufs, index.clone());
                            if let Err(e) = &out {
                                failed = Some(e.clone());
                            }
                            out
                        }
                    })
                    .collect()
            }
            (Some(e), _, _) | (None, Err(e), _) => jobs.iter().map(|_| Err(e.clone())).collect(),
            (None, Ok(()), None) => jobs.iter().map(|_| Err(GpuError::Device("not submitted".into()))).collect(),
        }
    }

    /// Fills the upload buffer, records the passes and submits them.
    pub(super) fn encode(&self, p: Src<'_>, plan: &JobLayout) -> Result<(JobBuffers, wgpu::SubmissionIndex), GpuError> {
        let mut enc =
            self.device.create_command_encoder(&wgpu::CommandEncoderDescriptor { label: Some("tessera job") });
        let bufs = self.encode_into(&mut enc, p, plan)?;
        let index = self.queue.submit([enc.finish()]);
        Ok((bufs, index))
    }

    /// Fills a job's upload buffer and records its copy in, its passes and
    /// its copy out into `enc`.
    fn encode_into(
        &self,
        enc: &mut wgpu::CommandEncoder,
        src: Src<'_>,
        plan: &JobLayout,
    ) -> Result<JobBuffers, GpuError> {
        let upload = self.take(Kind::Upload, plan.upload_len)?;
        {
            let mut view = upload
                .get_mapped_range_mut(0..plan.upload_len)
                .map_err(|e| GpuError::Device(format!("upload map: {e}")))?;
            let header = self.header(plan);
            view.slice(0..header.len()).copy_from_slice(&header);
            if let Src::Upload(p) = src {
                let start = plan.input.0 as usize;
                view.slice(start..start + p.byte_len()).copy_from_slice(p.data());
            }
        }
        upload.unmap();
        let input = self.take(Kind::Input, plan.upload_len)?;
        let work_a = self.take(Kind::Work, plan.work[0])?;
        let work_b = if plan.work[1] > 0 { Some(self.take(Kind::Work, plan.work[1])?) } else { None };
        let readback = self.take(Kind::Readback, plan.out_len4)?;
        enc.copy_buffer_to_buffer(&upload, 0, &input, 0, plan.upload_len);
        let source = match src {
            Src::Upload(_) => &input,
            Src::Resident(b) => b,
        };
        let last = self.record(enc, plan, &input, source, [Some(&work_a), work_b.as_ref()])?;
        enc.copy_buffer_to_buffer(last, 0, &readback, 0, plan.out_len4);
        Ok(JobBuffers { upload, input, work_a, work_b, readback })
    }

    /// Records the compute passes; returns the buffer holding the output.
    /// `input` holds the parameters and tables, `source` the input pixels
    /// (the same buffer, or a resident unit's).
    pub(super) fn record<'a>(
        &self,
        enc: &mut wgpu::CommandEncoder,
        plan: &JobLayout,
        input: &'a wgpu::Buffer,
        source: &'a wgpu::Buffer,
        work: [Option<&'a wgpu::Buffer>; 2],
    ) -> Result<&'a wgpu::Buffer, GpuError> {
        // Stages write to work[0], work[1], work[0] in turn.
        let mut stage = 0usize;
        let mut next_target = || {
            let t = work[stage % 2].ok_or_else(|| GpuError::Device("no work buffer".into()));
            stage += 1;
            t
        };
        // The image the next stage reads: None = the raw input section.
        let mut current: Option<(&wgpu::Buffer, u64)> = None;
        let mut pass =
            enc.begin_compute_pass(&wgpu::ComputePassDescriptor { label: Some("tessera"), timestamp_writes: None });
        let mut resize = |pipeline, params, src, (bounds, coeffs): (Section, Section), dst, (gx, gy)| {
            let bg = self.device.create_bind_group(&wgpu::BindGroupDescriptor {
                label: None,
                layout: &self.resize_layout,
                entries: &[
                    wgpu::BindGroupEntry { binding: 0, resource: binding(input, params) },
                    wgpu::BindGroupEntry { binding: 1, resource: src },
                    wgpu::BindGroupEntry { binding: 2, resource: binding(input, bounds) },
                    wgpu::BindGroupEntry { binding: 3, resource: binding(input, coeffs) },
                    wgpu::BindGroupEntry { binding: 4, resource: dst },
                ],
            });
            pass.set_pipeline(pipeline);
            pass.set_bind_group(0, &bg, &[]);
            pass.dispatch_workgroups(gx, gy, 1);
        };
        let base = plan.src_base_offset();
        let raw = binding(source, (base + plan.raw.0, plan.raw.1));
        if let Some(tables) = plan.tables_v {
            let target = next_target()?;
            for d in &plan.v_dispatch {
                let src = (base + d.band.offset, d.band.len);
                resize(
                    &self.resize_v,
                    d.params,
                    binding(source, src),
                    tables,
                    binding(target, (0, plan.v_len)),
                    d.groups,
                );
            }
            current = Some((target, plan.v_len));
        }
        if let (Some(tables), Some(groups)) = (plan.tables_h, plan.groups_h) {
            let target = next_target()?;
            let src = match current {
                None => raw.clone(),
                Some((b, len)) => binding(b, (0, len)),
            };
            resize(&self.resize_h, plan.params_h, src, tables, binding(target, (0, plan.h_len)), groups);
            current = Some((target, plan.h_len));
        }
        let current_binding = |current: Option<(&'a wgpu::Buffer, u64)>| match current {
            None => raw.clone(),
            Some((b, len)) => binding(b, (0, len)),
        };
        if let Some(r) = &plan.rotate {
            let target = next_target()?;
            let bg = self.device.create_bind_group(&wgpu::BindGroupDescriptor {
                label: None,
                layout: &self.pack_layout,
                entries: &[
                    wgpu::BindGroupEntry { binding: 0, resource: binding(input, r.params) },
                    wgpu::BindGroupEntry { binding: 1, resource: current_binding(current) },
                    wgpu::BindGroupEntry { binding: 2, resource: binding(target, (0, r.len)) },
                ],
            });
            pass.set_pipeline(&self.rotate);
            pass.set_bind_group(0, &bg, &[]);
            pass.dispatch_workgroups(r.groups.0, r.groups.1, 1);
            current = Some((target, r.len));
        }
        let target = next_target()?;
        let src = current_binding(current);
        let bg = self.device.create_bind_group(&wgpu::BindGroupDescriptor {
            label: None,
            layout: &self.pack_layout,
            entries: &[
                wgpu::BindGroupEntry { binding: 0, resource: binding(input, plan.params_p) },
                wgpu::BindGroupEntry { binding: 1, resource: src },
                wgpu::BindGroupEntry { binding: 2, resource: binding(target, (0, plan.out_len4)) },
            ],
        });
        pass.set_pipeline(&self.pack);
        pass.set_bind_group(0, &bg, &[]);
        pass.dispatch_workgroups(plan.groups_p.0, plan.groups_p.1, 1);
        Ok(target)
    }

    /// Waits for the job, reads the output, returns the buffers to the pool.
    pub(super) fn finish(
        &self,
        plan: &JobLayout,
        bufs: JobBuffers,
        index: wgpu::SubmissionIndex,
    ) -> Result<Vec<u8>, GpuError> {
        // This thread's scopes: an error of this job's mapping and readback
        // is this job's, never another thread's.
        let scopes = Scopes::push(&self.device);
        let out = self.read_back(plan, bufs, index);
        let scoped = scopes.pop();
        scoped.and(out)
    }

    /// Waits for the submission, maps the readback, copies the output and
    /// gives every buffer back to the pool.
    fn read_back(&self, plan: &JobLayout, bufs: JobBuffers, index: wgpu::SubmissionIndex) -> Result<Vec<u8>, GpuError> {
        let (tx, rx) = mpsc::channel::<(Kind, bool)>();
        let tx_up = tx.clone();
        // Re-map the upload buffer so that it goes back to the pool ready to write.
        bufs.upload.map_async(wgpu::MapMode::Write, .., move |r| {
            let _ = tx_up.send((Kind::Upload, r.is_ok()));
        });
        bufs.readback.map_async(wgpu::MapMode::Read, 0..plan.out_len4, move |r| {
            let _ = tx.send((Kind::Readback, r.is_ok()));
        });
        let wait = wgpu::PollType::Wait { submission_index: Some(index), timeout: Some(JOB_TIMEOUT) };
        self.device.poll(wait).map_err(|e| match e {
            wgpu::PollError::Timeout => GpuError::Device("job timed out".into()),
            other => GpuError::Device(other.to_string()),
        })?;
        let (mut upload_ok, mut readback_ok) = (None, None);
        for _ in 0..64 {
            while let Ok((kind, ok)) = rx.try_recv() {
                match kind {
                    Kind::Readback => readback_ok = Some(ok),
                    _ => upload_ok = Some(ok),
                }
            }
            if upload_ok.is_some() && readback_ok.is_some() {
                break;
            }
            // The callbacks run inside poll; another thread's poll may also run them.
            if self.device.poll(wgpu::PollType::Poll).is_err() {
                break;
            }
            std::thread::yield_now();
        }
        if self.lost.load(Ordering::Acquire) {
            return Err(GpuError::Lost);
        }
        if readback_ok != Some(true) {
            return Err(GpuError::Device("readback map failed".into()));
        }
        let data = {
            let view = bufs
                .readback
                .get_mapped_range(0..plan.out_len4)
                .map_err(|e| GpuError::Device(format!("readback view: {e}")))?;
            view.get(..plan.out_bytes as usize)
                .map(<[u8]>::to_vec)
                .ok_or_else(|| GpuError::Device("short readback".into()))?
        };
        bufs.readback.unmap();
        self.give(Kind::Readback, bufs.readback);
        if upload_ok == Some(true) {
            self.give(Kind::Upload, bufs.upload);
        }
        self.give(Kind::Input, bufs.input);
        self.give(Kind::Work, bufs.work_a);
        if let Some(b) = bufs.work_b {
            self.give(Kind::Work, b);
        }
        Ok(data)
    }
}

pub(super) fn binding(buf: &wgpu::Buffer, (offset, len): Section) -> wgpu::BindingResource<'_> {
    wgpu::BindingResource::Buffer(wgpu::BufferBinding { buffer: buf, offset, size: NonZeroU64::new(len) })
}
