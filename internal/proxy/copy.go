package proxy

import "io"

// copySplit copies src to dst through buf until src ends, and returns the
// read and write errors apart: which side failed decides who is to blame (a
// backend that broke off, or a client that went away). io.EOF is no error.
func copySplit(dst io.Writer, src io.Reader, buf []byte) (rerr, werr error) {
	for {
		k, err := src.Read(buf)
		if k > 0 {
			if _, werr = dst.Write(buf[:k]); werr != nil {
				return nil, werr
			}
		}
		if err == io.EOF {
			return nil, nil
		}
		if err != nil {
			return err, nil
		}
	}
}
